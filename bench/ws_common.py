"""Shared set-up for the WebSocket benchmarks: Django, a bench site, a logged-in session,
Daphne as a real process, and a light WebSocket client that reads one stock cell."""

import asyncio
import json
import os
import re
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "inventory_ops.settings")

from bench.server_env import production_environ_set  # noqa: E402

production_environ_set()

import django  # noqa: E402

django.setup()

import websockets  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.test import Client  # noqa: E402

from ledger.models import Site, Sku, StockLevel  # noqa: E402

BENCH_SITE = "bench-site"
BENCH_SKU = "BENCH-SKU"
BENCH_USER = "bench-viewer"
# Read the value without parsing the JSON frame: 1,000 json.loads per update would make the
# client, which shares the two cores with Daphne, the thing being measured.
STOCK_CELL = re.compile(rf'data-stock-on-hand=\\"{BENCH_SITE}/{BENCH_SKU}\\">(-?\d+)<'.encode())
COMPUTATIONS = re.compile(rb'"computations": (\d+)')
TIMING = re.compile(rb'"timing": (\{[^{}]*\})')


def bench_data_ensure() -> tuple[Site, Sku, str]:
    """The bench site and SKU, and a session cookie of a viewer."""
    site, _ = Site.objects.get_or_create(code=BENCH_SITE, defaults={"name": "Benchmark site"})
    sku, _ = Sku.objects.get_or_create(
        code=BENCH_SKU, defaults={"name": "Benchmark SKU", "unit_cost": "1.00"}
    )
    user, _ = get_user_model().objects.get_or_create(username=BENCH_USER)
    client = Client()
    client.force_login(user)
    return site, sku, f"sessionid={client.cookies['sessionid'].value}"


def on_hand_now(site: Site, sku: Sku) -> int:
    level = StockLevel.objects.filter(site=site, sku=sku).first()
    return level.on_hand if level else 0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class Watcher:
    """One WebSocket client: remembers when it first saw each stock value."""

    seen_at: dict[int, float] = field(default_factory=dict)
    # For each value, the frame that first showed it: its receipt (wall clock) and its timing.
    seen_wall: dict[int, float] = field(default_factory=dict)
    timing_of: dict[int, dict] = field(default_factory=dict)
    # When each view frame's computation started (wall clock, from its timing): one watcher of
    # one scope in one process sees every computation of that scope.
    computation_starts: list[float] = field(default_factory=list)
    computations: int = 0
    frames: int = 0
    retries: int = 0
    socket: object = None

    async def run(self, url: str, *, origin: str, cookie: str) -> None:
        for attempt in range(8):
            try:
                await self._receive(url, origin=origin, cookie=cookie)
                return
            except (OSError, websockets.InvalidHandshake, websockets.InvalidMessage):
                # A crowd of handshakes overflows the listen backlog; browsers retry, so do we.
                self.retries += 1
                await asyncio.sleep(0.2 * 2**attempt)

    async def _receive(self, url: str, *, origin: str, cookie: str) -> None:
        async with websockets.connect(
            url,
            origin=origin,
            additional_headers={"Cookie": cookie},
            max_size=None,
            ping_interval=None,
            open_timeout=60,
        ) as socket:
            self.socket = socket
            async for frame in socket:
                received, received_wall = time.monotonic(), time.time()
                self.frames += 1
                data = frame.encode() if isinstance(frame, str) else frame
                timing = TIMING.search(data)
                timing = json.loads(timing.group(1)) if timing else None
                if timing:
                    self.computation_starts.append(timing["started"])
                match = STOCK_CELL.search(data)
                if match and int(match.group(1)) not in self.seen_at:
                    value = int(match.group(1))
                    self.seen_at[value] = received
                    self.seen_wall[value] = received_wall
                    if timing:
                        self.timing_of[value] = timing
                match = COMPUTATIONS.search(data)
                if match:
                    self.computations = max(self.computations, int(match.group(1)))


async def watchers_connect(count: int, url: str, *, origin: str, cookie: str, batch: int = 25):
    """Open `count` clients, a batch at a time, each batch waiting for its first views."""
    watchers = [Watcher() for _ in range(count)]
    tasks = []
    for start in range(0, count, batch):
        group = watchers[start : start + batch]
        for watcher in group:
            tasks.append(asyncio.create_task(watcher.run(url, origin=origin, cookie=cookie)))
        deadline = time.monotonic() + 30
        while not all(watcher.frames for watcher in group) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
    return watchers, tasks


def first_seen(watcher: Watcher, at_least: int) -> float | None:
    value = first_value_seen(watcher, at_least)
    return None if value is None else watcher.seen_at[value]


def first_value_seen(watcher: Watcher, at_least: int) -> int | None:
    """The value of the first frame that showed at least `at_least`."""
    values = [value for value in watcher.seen_at if value >= at_least]
    return min(values, key=watcher.seen_at.__getitem__) if values else None


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[int(share * 1000) - 1]


def latency_report(name: str, seconds: list[float]) -> str:
    ms = [value * 1000 for value in seconds]
    return (
        f"{name}: n={len(ms)} p50={percentile(ms, 0.5):.0f} ms p95={percentile(ms, 0.95):.0f} ms "
        f"p99={percentile(ms, 0.99):.0f} ms max={max(ms):.0f} ms"
    )
