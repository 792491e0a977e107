"""Fan-out: N WebSocket clients on ONE Daphne process, all watching one site.

For each update the bench writes one movement and announces it (as an ingest worker does), then
measures when every client has the new stock value. Prints delivery latency over all clients,
the number of view computations per update (it must not grow with the clients) and Daphne's
memory idle and with N clients.

    DATABASE_URL=... REDIS_URL=... flock /tmp/bench.lock .venv/bin/python bench/ws_fanout.py \
        --clients 1000 --updates 20
"""

import argparse
import asyncio
import time

from django.utils import timezone

from bench.ws_common import (
    bench_data_ensure,
    first_seen,
    latency_report,
    on_hand_now,
    rss_mb,
    watchers_connect,
)
from dashboards.broadcasts import scopes_changed_announce
from ledger.models import MovementKind
from ledger.services import MovementRequest, movements_record
from tests.processes import daphne_server


def stock_add(site, sku, qty: int) -> None:
    movements_record(
        requests=[
            MovementRequest(
                site=site.code,
                sku=sku.code,
                kind=MovementKind.RECEIVED,
                on_hand_delta=qty,
                occurred_at=timezone.now(),
                cause_ref="bench:ws_fanout",
            )
        ]
    )


async def bench(args, daphne, site, sku, cookie) -> None:
    url = daphne.base_url.replace("http://", "ws://") + f"/ws/dashboard/?site={site.code}"
    idle_mb = rss_mb(daphne.pid)
    started = time.monotonic()
    watchers, tasks = await watchers_connect(
        args.clients, url, origin=daphne.base_url, cookie=cookie
    )
    connected = sum(1 for watcher in watchers if watcher.frames)
    retries = sum(watcher.retries for watcher in watchers)
    print(
        f"clients connected with a first view: {connected}/{args.clients} "
        f"in {time.monotonic() - started:.1f}s ({retries} handshake retries)"
    )
    await asyncio.sleep(2)
    computations_before = max(watcher.computations for watcher in watchers)
    loaded_mb = rss_mb(daphne.pid)

    latencies, missed, worst_per_update = [], 0, []
    for _ in range(args.updates):
        expected = await asyncio.to_thread(on_hand_now, site, sku) + 1
        announced = time.monotonic()
        await asyncio.to_thread(stock_add, site, sku, 1)
        await asyncio.to_thread(scopes_changed_announce, site_codes=[site.code])
        deadline = announced + args.timeout
        while time.monotonic() < deadline:
            if all(first_seen(watcher, expected) for watcher in watchers):
                break
            await asyncio.sleep(0.01)
        update = []
        for watcher in watchers:
            seen = first_seen(watcher, expected)
            if seen is None:
                missed += 1
            else:
                update.append(seen - announced)
        latencies.extend(update)
        if len(update) < len(watchers):
            print(f"update to {expected}: {len(watchers) - len(update)} clients missed it")
        worst_per_update.append(max(update) if update else float("nan"))
        await asyncio.sleep(args.interval)

    computations = max(watcher.computations for watcher in watchers) - computations_before
    print(latency_report("write+announce -> client has the new value", latencies))
    slowest = sorted(worst_per_update)
    print(
        f"slowest client per update: p50={slowest[len(slowest) // 2] * 1000:.0f} ms "
        f"max={slowest[-1] * 1000:.0f} ms"
    )
    print(f"missed deliveries: {missed} of {args.updates * args.clients}")
    print(
        f"view computations: {computations} for {args.updates} updates "
        f"= {computations / args.updates:.2f} per update with {args.clients} clients"
    )
    print(f"Daphne RSS: idle {idle_mb:.0f} MB, with {connected} clients {loaded_mb:.0f} MB")
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--updates", type=int, default=20)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between updates")
    parser.add_argument("--timeout", type=float, default=5.0, help="per update")
    args = parser.parse_args()
    site, sku, cookie = bench_data_ensure()
    with daphne_server() as daphne:
        asyncio.run(bench(args, daphne, site, sku, cookie))


if __name__ == "__main__":
    main()
