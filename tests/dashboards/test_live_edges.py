"""Leading and trailing edges of the live coalescing, end to end: a real Daphne process, a real
WebSocket client, writes committed to the database and announced through the real Redis channel
layer, as a worker does.

- Leading edge: the first change after a quiet spell is computed and sent at once, not at the
  end of a coalescing interval.
- A continuous flow is coalesced: at most one computation per interval (at most 5 per second per
  scope with the default bounds), a few frames for hundreds of changes.
- Trailing edge: nothing is lost; the state after the last change is always sent.
"""

import asyncio
import itertools
import json
import re
import time

import pytest
import websockets
from django.test import Client

from dashboards.broadcasts import scopes_changed_announce
from ledger.services import movements_record
from tests.builders import receive, site_make, sku_make, user_make
from tests.processes import daphne_server, subprocess_env

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

STOCK = re.compile(r'data-stock-on-hand="ams/TEA">(-?\d+)<')


def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


def write_and_announce(site, sku, qty: int = 1) -> None:
    """What an ingest worker does with a batch: commit, then announce."""
    movements_record(requests=[receive(site, sku, qty)])
    scopes_changed_announce(site_codes=[site.code])


class Screen:
    """A dashboard client: every view frame with when it arrived and the stock it shows."""

    def __init__(self, socket):
        self.socket = socket
        self.views: list[dict] = []
        self.changed = asyncio.Event()

    async def read(self) -> None:
        async for message in self.socket:
            frame = json.loads(message)
            if frame["type"] != "view":
                continue
            frame["received"] = time.time()
            stock = STOCK.search(frame["html"])  # no cell before the first movement
            frame["stock"] = int(stock.group(1)) if stock else 0
            self.views.append(frame)
            self.changed.set()

    async def showing(self, stock: int, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for frame in self.views:
                if frame["stock"] >= stock:
                    return frame
            self.changed.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                shown = [frame["stock"] for frame in self.views]
                raise AssertionError(f"stock {stock} never shown: {shown}")
            await asyncio.wait_for(self.changed.wait(), remaining)


async def watched(daphne, cookie: str, scenario):
    url = daphne.base_url.replace("http://", "ws://") + "/ws/dashboard/?site=ams"
    async with websockets.connect(
        url, origin=daphne.base_url, additional_headers={"Cookie": cookie}, max_size=None
    ) as socket:
        screen = Screen(socket)
        reader = asyncio.create_task(screen.read())
        try:
            await screen.showing(0, timeout=10)  # the first view
            return await scenario(screen)
        finally:
            reader.cancel()


def test_the_first_change_after_a_quiet_spell_is_sent_at_once_and_the_next_waits():
    # given a screen of ams on a server whose coalescing interval is pinned to 3 s
    ams, tea = site_make("ams"), sku_make("TEA")
    cookie = session_cookie(user_make())
    interval = 3.0

    async def scenario(screen):
        await asyncio.sleep(interval + 0.3)  # quiet: no computation in the last interval
        # when a change is committed and announced, then another right after
        announced = time.time()
        await asyncio.to_thread(write_and_announce, ams, tea)
        first = await screen.showing(1, timeout=interval)
        await asyncio.to_thread(write_and_announce, ams, tea)
        second = await screen.showing(2, timeout=interval + 3)
        return announced, first, second

    env = subprocess_env(DASHBOARD_COALESCE_MS=str(int(interval * 1000)))
    with daphne_server(env=env) as daphne:
        announced, first, second = asyncio.run(watched(daphne, cookie, scenario))

    # then the first was computed as soon as it was heard and shown well within the interval
    assert first["timing"]["started"] - first["timing"]["heard"] < 0.5
    assert first["received"] - announced < interval / 2
    # and the second, heard within the interval, waited for it (coalescing is still on)
    assert second["timing"]["started"] - first["timing"]["started"] >= interval - 0.05


def test_a_continuous_flow_is_coalesced_and_its_last_state_is_always_sent():
    # given a screen of ams with the default, adaptive interval (at least 200 ms)
    ams, tea = site_make("ams"), sku_make("TEA")
    cookie = session_cookie(user_make())
    flow_s = 3.0

    def flow() -> tuple[int, float, float]:
        writes, started = 0, time.time()
        while time.time() - started < flow_s:
            write_and_announce(ams, tea)
            writes += 1
        return writes, started, time.time()

    async def scenario(screen):
        # when changes are committed and announced back to back for 3 s, as workers do
        writes, started, ended = await asyncio.to_thread(flow)
        last = await screen.showing(writes, timeout=5)
        return writes, started, ended, last, list(screen.views)

    with daphne_server(env=subprocess_env()) as daphne:
        writes, started, ended, last, views = asyncio.run(watched(daphne, cookie, scenario))

    # then the flow cost a few computations, never two within 200 ms of each other, so at most
    # 5 per second for the scope; far fewer frames than changes
    starts = [view["timing"]["started"] for view in views if view["timing"]["started"] >= started]
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert writes >= 10, writes
    assert 2 <= len(starts) <= flow_s * 5 + 2, (len(starts), writes)
    assert min(gaps) >= 0.195, gaps
    assert max(sum(1 for s in starts if t <= s < t + 0.98) for t in starts) <= 5, starts
    # and nothing was lost: the last frame shows every change, and came within the longest
    # interval (1 s) and a computation of the last write (slow on a loaded machine)
    assert last["stock"] == views[-1]["stock"] == writes
    assert last["received"] - ended < 3.0
