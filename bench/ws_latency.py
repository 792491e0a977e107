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
import bisect
import contextlib
import itertools
import json
import os
import statistics
import sys
import time
import urllib.error
import urllib.request
import uuid

from django.conf import settings
from django.utils import timezone

from bench.server_env import settings_line
from bench.ws_common import (
    Watcher,
    bench_data_ensure,
    first_value_seen,
    latency_report,
    on_hand_now,
    percentile,
)
from dashboards.broadcasts import scopes_changed_announce
from ledger.models import MovementKind
from ledger.services import MovementRequest, movements_record
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


def ingest_post(base_url: str, token: str, events: list[dict]) -> dict:
    """POST one batch; return its status, batch id and when the answer came (wall clock)."""
    request = urllib.request.Request(  # noqa: S310 (local bench server)
        f"{base_url}/api/ingest/events",
        data=json.dumps({"events": events}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            body = json.loads(response.read())
            return {"status": response.status, "batch_id": body.get("batch_id"), **_now("answered")}
    except urllib.error.HTTPError as error:
        return {"status": error.code, **_now("answered")}


def _now(name: str) -> dict:
    return {name: time.time()}


def direct_apply(site_code: str, sku_code: str, events: list[dict]) -> dict:
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
    committed = time.time()
    scopes_changed_announce(site_codes=[site_code])
    return {"status": 202, "committed": committed, **_now("announce_returned")}


def batch_stamps_load(batches: list[dict]) -> None:
    """Add the database's stamps of each accepted batch: stored, claimed by a job, finished
    (set in the applying transaction, just before its commit)."""
    from ingest.models import IngestBatch

    ids = [batch["batch_id"] for batch in batches if batch.get("batch_id")]
    rows = IngestBatch.objects.filter(pk__in=ids).values_list(
        "pk", "received_at", "started_at", "finished_at"
    )
    by_id = {str(pk): (received, started, finished) for pk, received, started, finished in rows}
    for batch in batches:
        stamps = by_id.get(batch.get("batch_id"))
        if stamps and all(stamps):
            batch["stored"], batch["claimed"], batch["finished"] = (
                stamp.timestamp() for stamp in stamps
            )


# (name, from, to): consecutive stages of one batch's way to the screen, wall-clock stamps.
# "frame.*" are the stamps of the first frame that showed the batch (dashboards.live.frame_timing)
# and "received" is when the client had that frame.
STAGES = {
    "ingest": [
        ("POST: sent -> batch stored", "sent", "stored"),
        ("queue: stored -> a job claims it", "stored", "claimed"),
        ("apply: claimed -> finished (commit follows)", "claimed", "finished"),
        ("commit -> computation starts (announce + coalescing wait)", "finished", "started"),
        ("view computation", "started", "computed"),
        ("serialise + send + client receive", "computed", "received"),
    ],
    "direct": [
        ("write: sent -> committed", "sent", "committed"),
        ("commit -> computation starts (announce + coalescing wait)", "committed", "started"),
        ("view computation", "started", "computed"),
        ("serialise + send + client receive", "computed", "received"),
    ],
}


def breakdown_report(via: str, batches: list[dict]) -> list[str]:
    """Per stage: p50 / p95 / p99 over the batches, and the mean of each stage over the slowest
    5% of batches (what makes the tail)."""
    stages = STAGES[via]
    complete = [batch for batch in batches if all(a in batch and b in batch for _, a, b in stages)]
    if not complete:
        return ["breakdown: no batch with every stamp"]
    complete.sort(key=lambda batch: batch["received"] - batch["sent"])
    tail = complete[-max(1, len(complete) // 20) :]
    lines = [
        f"breakdown over {len(complete)} batches (ms): p50 / p95 / p99; mean over the slowest 5%"
    ]
    for name, start, end in stages:
        ms = [(batch[end] - batch[start]) * 1000 for batch in complete]
        tail_mean = statistics.mean((batch[end] - batch[start]) * 1000 for batch in tail)
        lines.append(
            f"  {name:<60} {percentile(ms, 0.5):6.0f} {percentile(ms, 0.95):6.0f} "
            f"{percentile(ms, 0.99):6.0f}; {tail_mean:6.0f}"
        )
    return lines


def frames_report(watcher: Watcher) -> list[str]:
    """The hub's side, per frame caused by an announcement: how long the announcement
    travelled (writer's send to the hub hearing it) and waited (heard to computation start)."""
    timings = [t for t in watcher.timing_of.values() if t.get("announced") is not None]
    if not timings:
        return []
    lines = [f"hub, over {len(timings)} frames (ms): p50 / p95 / p99"]
    for name, start, end in (
        ("announcement: writer sends -> hub hears", "announced", "heard"),
        ("hub: heard -> computation starts (coalescing)", "heard", "started"),
        ("view computation", "started", "computed"),
    ):
        ms = [(t[end] - t[start]) * 1000 for t in timings]
        lines.append(
            f"  {name:<60} {percentile(ms, 0.5):6.0f} {percentile(ms, 0.95):6.0f} "
            f"{percentile(ms, 0.99):6.0f}"
        )
    ms = [t["cpu"] * 1000 for t in timings if "cpu" in t]
    if ms:
        lines.append(
            f"  {'  of which CPU time of the computing thread':<60} {percentile(ms, 0.5):6.0f} "
            f"{percentile(ms, 0.95):6.0f} {percentile(ms, 0.99):6.0f}"
        )
    return lines


def computations_report(watcher: Watcher, since: float, until: float) -> str:
    """Computations of the watched scope while events flowed: per second on average, the most
    that started within any one second, and the shortest gap between two (the interval)."""
    starts = sorted(s for s in watcher.computation_starts if since <= s <= until)
    if not starts:
        return "computations of the watched scope while events flowed: none"
    most = max(bisect.bisect_left(starts, start + 1) - i for i, start in enumerate(starts))
    gaps = [(later - earlier) * 1000 for earlier, later in itertools.pairwise(starts)]
    gap = ""
    if gaps:
        gap = f"{min(gaps):.0f} ms shortest gap, {statistics.median(gaps):.0f} ms median"
    return (
        f"computations of the watched scope while events flowed: {len(starts)} in "
        f"{until - since:.1f}s = {len(starts) / (until - since):.1f}/s, at most {most} in any "
        f"1 s; {gap}"
    )


def coalescing_line() -> str:
    if settings.DASHBOARD_COALESCE_MS is not None:
        return f"DASHBOARD_COALESCE_MS={settings.DASHBOARD_COALESCE_MS} (pinned)"
    return (
        f"coalescing adaptive {settings.DASHBOARD_COALESCE_MIN_MS}.."
        f"{settings.DASHBOARD_COALESCE_MAX_MS} ms"
    )


async def bench(args, daphne, site, sku, cookie, send_batch) -> None:
    url = daphne.base_url.replace("http://", "ws://") + f"/ws/dashboard/?site={site.code}"
    watcher = Watcher()
    task = asyncio.create_task(watcher.run(url, origin=daphne.base_url, cookie=cookie))
    while not watcher.frames:
        await asyncio.sleep(0.05)

    batch_size = max(1, round(args.rate * args.batch_interval))
    initial = await asyncio.to_thread(on_hand_now, site, sku)
    batches: list[dict] = []  # in sending order: stamps of each batch's way

    async def send(batch: dict, events: list[dict]) -> None:
        batch.update(await asyncio.to_thread(send_batch, events))

    # Batches go out on a fixed clock, not one after the other: a slow answer must not lower
    # the rate. Batches may then apply out of order, so "batch k is shown" means the client
    # shows at least k batches' worth of stock.
    sends = []
    started, started_wall = time.monotonic(), time.time()
    next_send = started
    while time.monotonic() - started < args.duration:
        batch = {"sent_monotonic": time.monotonic(), "sent": time.time()}
        batches.append(batch)
        events = events_build(site.code, sku.code, batch_size)
        sends.append(asyncio.create_task(send(batch, events)))
        next_send += args.batch_interval
        await asyncio.sleep(max(0, next_send - time.monotonic()))
    await asyncio.gather(*sends)
    elapsed = time.monotonic() - started
    flow_ended_wall = time.time()
    await asyncio.sleep(5)  # let the last batches arrive
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    statuses: dict[int, int] = {}
    for batch in batches:
        statuses[batch["status"]] = statuses.get(batch["status"], 0) + 1
    accepted = [batch for batch in batches if batch["status"] == 202]
    if args.via == "ingest":
        await asyncio.to_thread(batch_stamps_load, accepted)

    latencies = []
    missing = 0
    for k, batch in enumerate(accepted):
        value = first_value_seen(watcher, initial + batch_size * (k + 1))
        if value is None:
            missing += 1
            continue
        latencies.append(max(0.0, watcher.seen_at[value] - batch["sent_monotonic"]))
        batch["received"] = watcher.seen_wall[value]
        batch.update(watcher.timing_of.get(value, {}))
    events_sent = len(accepted) * batch_size
    print(f"{settings_line()}, {coalescing_line()}")
    print(
        f"path: {args.via}; {events_sent} events accepted in {elapsed:.1f}s "
        f"= {events_sent / elapsed:.0f} events/s, batches of {batch_size}; statuses {statuses}"
    )
    print(latency_report("event sent -> client shows it", latencies))
    print(
        f"batches never shown within 5 s of the end: {missing}; frames received: "
        f"{watcher.frames} (coalesced: {len(accepted)} batches)"
    )
    print(computations_report(watcher, started_wall, flow_ended_wall))
    for line in breakdown_report(args.via, accepted) + frames_report(watcher):
        print(line)
    print(
        f"load average: {args.load_at_start:.2f} at the start, {os.getloadavg()[0]:.2f} at the end"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--via", choices=["ingest", "direct"], default="ingest")
    parser.add_argument("--rate", type=float, default=1000, help="events per second")
    parser.add_argument("--batch-interval", type=float, default=0.1, help="seconds")
    parser.add_argument("--duration", type=float, default=30, help="seconds")
    parser.add_argument("--workers", type=int, default=2, help="RQ workers (ingest path)")
    args = parser.parse_args()
    args.load_at_start = os.getloadavg()[0]
    site, sku, cookie = bench_data_ensure()

    with daphne_server() as daphne:
        if args.via == "direct":
            send_batch = lambda events: direct_apply(site.code, sku.code, events)  # noqa: E731
            asyncio.run(bench(args, daphne, site, sku, cookie, send_batch))
            return
        from bench.ingest_common import source_token

        # one source of its own, its token rotated each run (a source per run piled up)
        token = source_token("bench-ws-latency")
        status = ingest_post(daphne.base_url, token, [])["status"]
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
