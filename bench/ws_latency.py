"""Latency from an event POST to a WebSocket client showing the changed value, under load.

Sends `stock.received` events for the bench SKU (qty 1 each) at --rate events/s in batches,
and a dashboard client watches the bench site's stock cell: for each batch, the latency is the
time from sending it to the first frame whose on-hand value includes it.

    --via ingest (default): POST /api/ingest/events with a feed token, applied by a real RQ
        worker process (the full path). Needs the ingest API (ingest issue).
    --via direct: this process plays the ingest worker (movements_record + announce after
        commit), to measure the dashboard part alone while the ingest API is not there.

    DATABASE_URL=... REDIS_URL=... flock /tmp/bench.lock .venv/bin/python -m bench.ws_latency
"""

import argparse
import asyncio
import contextlib
import json
import sys
import time
import urllib.error
import urllib.request
import uuid

from django.utils import timezone

from bench.ws_common import (
    Watcher,
    bench_data_ensure,
    first_seen,
    latency_report,
    on_hand_now,
)
from dashboards.broadcasts import scopes_changed_announce
from inventory_ops.models import MovementKind
from inventory_ops.services import MovementRequest, movements_record
from tests.processes import daphne_server, rq_worker


def events_build(site_code: str, sku_code: str, count: int) -> list[dict]:
    now = timezone.now().isoformat()
    return [
        {
            "event_id": f"bench-{uuid.uuid4().hex}",
            "type": "stock.received",
            "occurred_at": now,
            "site": site_code,
            "sku": sku_code,
            "qty": 1,
        }
        for _ in range(count)
    ]


def ingest_post(base_url: str, token: str, events: list[dict]) -> int:
    request = urllib.request.Request(  # noqa: S310 (local bench server)
        f"{base_url}/api/ingest/events",
        data=json.dumps({"events": events}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def direct_apply(site_code: str, sku_code: str, events: list[dict]) -> int:
    """What an ingest worker does with a batch: one transaction, then one announcement."""
    movements_record(
        requests=[
            MovementRequest(
                site=site_code,
                sku=sku_code,
                kind=MovementKind.RECEIVED,
                on_hand_delta=event["qty"],
                occurred_at=timezone.now(),
                cause_ref=f"bench:{event['event_id']}",
            )
            for event in events
        ]
    )
    scopes_changed_announce(site_codes=[site_code])
    return 202


async def bench(args, daphne, site, sku, cookie, send_batch) -> None:
    url = daphne.base_url.replace("http://", "ws://") + f"/ws/dashboard/?site={site.code}"
    watcher = Watcher()
    task = asyncio.create_task(watcher.run(url, origin=daphne.base_url, cookie=cookie))
    while not watcher.frames:
        await asyncio.sleep(0.05)

    batch_size = max(1, round(args.rate * args.batch_interval))
    initial = await asyncio.to_thread(on_hand_now, site, sku)
    sent_at: list[float] = []
    statuses: dict[int, int] = {}

    async def send(events: list[dict]) -> None:
        status = await asyncio.to_thread(send_batch, events)
        statuses[status] = statuses.get(status, 0) + 1

    # Batches go out on a fixed clock, not one after the other: a slow answer must not lower
    # the rate. Batches may then apply out of order, so "batch k is shown" means the client
    # shows at least k batches' worth of stock.
    sends = []
    started = time.monotonic()
    next_send = started
    while time.monotonic() - started < args.duration:
        sent_at.append(time.monotonic())
        sends.append(asyncio.create_task(send(events_build(site.code, sku.code, batch_size))))
        next_send += args.batch_interval
        await asyncio.sleep(max(0, next_send - time.monotonic()))
    await asyncio.gather(*sends)
    elapsed = time.monotonic() - started
    await asyncio.sleep(5)  # let the last batches arrive
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    accepted = statuses.get(202, 0)
    sent = [(at, initial + batch_size * (k + 1)) for k, at in enumerate(sent_at[:accepted])]

    latencies = []
    missing = 0
    for batch_sent_at, value in sent:
        seen = first_seen(watcher, value)
        if seen is None:
            missing += 1
        else:
            latencies.append(max(0.0, seen - batch_sent_at))
    events_sent = len(sent) * batch_size
    print(
        f"path: {args.via}; {events_sent} events accepted in {elapsed:.1f}s "
        f"= {events_sent / elapsed:.0f} events/s, batches of {batch_size}; statuses {statuses}"
    )
    print(latency_report("event sent -> client shows it", latencies))
    print(
        f"batches never shown within 5 s of the end: {missing}; frames received: "
        f"{watcher.frames} (coalesced: {len(sent)} batches)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--via", choices=["ingest", "direct"], default="ingest")
    parser.add_argument("--rate", type=float, default=1000, help="events per second")
    parser.add_argument("--batch-interval", type=float, default=0.1, help="seconds")
    parser.add_argument("--duration", type=float, default=30, help="seconds")
    parser.add_argument("--workers", type=int, default=2, help="RQ workers (ingest path)")
    args = parser.parse_args()
    site, sku, cookie = bench_data_ensure()

    with daphne_server() as daphne:
        if args.via == "direct":
            send_batch = lambda events: direct_apply(site.code, sku.code, events)  # noqa: E731
            asyncio.run(bench(args, daphne, site, sku, cookie, send_batch))
            return
        from ingest.services import feed_source_create

        token = feed_source_create(name=f"bench-{uuid.uuid4().hex[:8]}").token
        status = ingest_post(daphne.base_url, token, [])
        if status in (404, 405):
            sys.exit(
                f"POST /api/ingest/events answered {status}: the ingest API is not there yet. "
                "Use --via direct to measure the dashboard path alone."
            )
        with contextlib.ExitStack() as workers:
            for number in range(args.workers):
                workers.enter_context(rq_worker(log_name=f"bench-rqworker-{number}"))
            send_batch = lambda events: ingest_post(daphne.base_url, token, events)  # noqa: E731
            asyncio.run(bench(args, daphne, site, sku, cookie, send_batch))


if __name__ == "__main__":
    main()
