"""The dashboard WebSocket on a real Daphne process, with a real WebSocket client."""

import asyncio
import json

import pytest
import websockets
from django.test import Client

from tests.builders import site_make, user_make
from tests.processes import daphne_server, subprocess_env

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


async def handshake(url: str, *, origin: str, cookie: str | None = None):
    headers = {"Cookie": cookie} if cookie else {}
    try:
        async with websockets.connect(url, origin=origin, additional_headers=headers) as socket:
            return json.loads(await asyncio.wait_for(socket.recv(), timeout=10))
    except websockets.InvalidStatus as refused:
        return refused.response.status_code


def test_daphne_refuses_anonymous_and_foreign_origins_and_serves_a_logged_in_user():
    site_make("ams")
    cookie = session_cookie(user_make())
    with daphne_server() as daphne:
        url = daphne.base_url.replace("http://", "ws://") + "/ws/dashboard/?site=ams"
        origin = daphne.base_url

        anonymous = asyncio.run(handshake(url, origin=origin))
        foreign = asyncio.run(handshake(url, origin="https://evil.example", cookie=cookie))
        welcome = asyncio.run(handshake(url, origin=origin, cookie=cookie))

    assert anonymous == 403
    assert foreign == 403
    assert welcome["type"] == "view"
    assert welcome["scope"] == "ams|1h"
    assert 'data-kpi="negative_stock"' in welcome["html"]


def test_metrics_count_the_dashboard_sockets_open_in_the_web_process():
    import urllib.request

    site_make("ams")
    cookie = session_cookie(user_make())

    def websocket_clients(base_url: str) -> float:
        scrape = urllib.request.Request(  # noqa: S310 (local)
            f"{base_url}/metrics", headers={"Authorization": "Bearer metrics-token-for-tests"}
        )
        with urllib.request.urlopen(scrape) as response:  # noqa: S310 (local)
            for line in response.read().decode().splitlines():
                if line.startswith("inventory_ops_websocket_clients "):
                    return float(line.split()[1])
        raise AssertionError("no inventory_ops_websocket_clients sample")

    async def while_two_watch(base_url: str) -> float:
        url = base_url.replace("http://", "ws://") + "/ws/dashboard/?site=ams"
        headers = {"Cookie": cookie}
        async with (
            websockets.connect(url, origin=base_url, additional_headers=headers) as first,
            websockets.connect(url, origin=base_url, additional_headers=headers) as second,
        ):
            await first.recv()
            await second.recv()
            return await asyncio.to_thread(websocket_clients, base_url)

    with daphne_server(env=subprocess_env(METRICS_TOKEN="metrics-token-for-tests")) as daphne:
        before = websocket_clients(daphne.base_url)
        during = asyncio.run(while_two_watch(daphne.base_url))

    assert (before, during) == (0, 2)
