"""The dashboard WebSocket through the real ASGI stack (origin check, session auth, routing)
and the real Redis announcements; Daphne itself in test_consumers_daphne.py."""

import asyncio
import json

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from dashboards.broadcasts import scopes_changed_announce
from dashboards.live import hub_get, websocket_clients_count
from dashboards.panels import CHARTS
from inventory_ops.asgi import application
from ledger.services import movements_record
from tests.builders import receive, site_make, sku_make, user_make

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = b"http://127.0.0.1"


@pytest.fixture(autouse=True)
def live_settings(settings):
    settings.DASHBOARD_COALESCE_MS = 100
    settings.DASHBOARD_REFRESH_S = 3600  # no periodic refresh frames during a test


def session_cookie(user) -> bytes:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


def communicator(path: str, *, cookie: bytes | None = None, origin: bytes = ORIGIN):
    headers = [(b"host", b"127.0.0.1"), (b"origin", origin)]
    if cookie:
        headers.append((b"cookie", cookie))
    return WebsocketCommunicator(application, path, headers=headers)


async def frame_receive(socket, timeout: float = 5) -> dict:
    return json.loads(await socket.receive_from(timeout=timeout))


async def close_all(*sockets):
    for socket in sockets:
        await socket.disconnect()
    await hub_get().close()


@pytest.mark.parametrize(
    ("logged_in", "origin"),
    [
        (False, ORIGIN),  # anonymous
        (True, b"https://evil.example"),  # a foreign page riding on a user's session
    ],
)
def test_the_handshake_is_refused(logged_in, origin):
    cookie = session_cookie(user_make()) if logged_in else None

    async def scenario():
        socket = communicator("/ws/dashboard/", cookie=cookie, origin=origin)
        connected, _ = await socket.connect()
        await close_all(socket)
        return connected

    assert async_to_sync(scenario)() is False


def test_a_logged_in_user_gets_the_full_view_at_once():
    # given a site with stock
    site, sku = site_make("ams"), sku_make("TEA")
    movements_record(requests=[receive(site, sku, 7)])
    cookie = session_cookie(user_make())

    async def scenario():
        socket = communicator("/ws/dashboard/?site=ams&window=24h", cookie=cookie)
        connected, _ = await socket.connect()
        frame = await frame_receive(socket)
        await close_all(socket)
        return connected, frame

    connected, frame = async_to_sync(scenario)()

    assert connected
    assert frame["type"] == "view"
    assert frame["scope"] == "ams|24h"
    assert 'data-kpi="order_accuracy"' in frame["html"]
    assert 'data-stock-on-hand="ams/TEA">7<' in frame["html"]
    assert 'hx-swap-oob="true"' in frame["html"]
    assert set(frame["charts"]) == set(CHARTS)


@pytest.mark.parametrize(
    ("query", "close_code", "message"),
    [
        ("site=nowhere", 4404, "unknown site 'nowhere'"),
        ("window=2h", 4400, "unknown window '2h'; use one of 1h, 24h, 7d, 30d"),
    ],
)
def test_a_bad_scope_is_answered_with_the_reason_and_closed(query, close_code, message):
    cookie = session_cookie(user_make())

    async def scenario():
        socket = communicator(f"/ws/dashboard/?{query}", cookie=cookie)
        await socket.connect()
        frame = await frame_receive(socket)
        closed = await socket.receive_output(timeout=2)
        await close_all(socket)
        return frame, closed

    frame, closed = async_to_sync(scenario)()

    assert frame == {"type": "error", "message": message}
    assert closed == {"type": "websocket.close", "code": close_code}


def test_a_watcher_of_one_site_gets_its_updates_and_not_another_sites():
    # given watchers of ams and rtm, each with its first view
    ams, rtm, tea = site_make("ams"), site_make("rtm"), sku_make("TEA")
    movements_record(requests=[receive(ams, tea, 5), receive(rtm, tea, 9)])
    cookie = session_cookie(user_make())

    async def scenario():
        ams_socket = communicator("/ws/dashboard/?site=ams", cookie=cookie)
        rtm_socket = communicator("/ws/dashboard/?site=rtm", cookie=cookie)
        await ams_socket.connect()
        await rtm_socket.connect()
        await frame_receive(ams_socket)
        await frame_receive(rtm_socket)
        await asyncio.wait_for(hub_get().listening.wait(), timeout=5)
        # when stock arrives at ams and the writer announces it
        await sync_to_async(movements_record)(requests=[receive(ams, tea, 3)])
        await sync_to_async(scopes_changed_announce)(site_codes=["ams"])
        ams_update = await frame_receive(ams_socket)
        rtm_heard_nothing = await rtm_socket.receive_nothing(timeout=1)
        await close_all(ams_socket, rtm_socket)
        return ams_update, rtm_heard_nothing

    ams_update, rtm_heard_nothing = async_to_sync(scenario)()

    # then ams shows the new stock, and rtm was not sent anything
    assert 'data-stock-on-hand="ams/TEA">8<' in ams_update["html"]
    assert rtm_heard_nothing


def test_many_watchers_of_one_scope_share_one_computation():
    site_make("ams")
    cookie = session_cookie(user_make())

    async def scenario():
        sockets = [communicator("/ws/dashboard/?site=ams", cookie=cookie) for _ in range(20)]
        for socket in sockets:
            await socket.connect()
        frames = [await frame_receive(socket) for socket in sockets]
        clients = websocket_clients_count()
        await close_all(*sockets)
        return frames, clients, websocket_clients_count()

    frames, clients_open, clients_after = async_to_sync(scenario)()

    assert {frame["computations"] for frame in frames} == {1}
    assert (clients_open, clients_after) == (20, 0)
