"""Ingest lag (received to applied) at a steady rate: p50 and p99 over every event.

    flock /tmp/bench.lock .venv/bin/python bench/ingest_lag.py [--rate 1000] [--seconds 60]
        [--batches-per-second 5] [--workers 1]

Posts `rate / batches-per-second` simulator events every 1/batches-per-second seconds through
Daphne; a batch's lag is its `finished_at - received_at` (every event in it shares it).
"""

import argparse
import time

import ingest_stack


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    lower = int(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=1000, help="events per second")
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--batches-per-second", type=float, default=5)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    ingest_stack.database_recreate()
    from django.db import connection
    from ingest_common import catalog_ensure, simulator_batches, source_token

    from ingest.models import BatchStatus, IngestBatch

    catalog_ensure()
    token = source_token()
    batch_size = int(args.rate / args.batches_per_second)
    count = int(args.seconds * args.batches_per_second)
    bodies = simulator_batches(total=batch_size * count, batch_size=batch_size, seed=11)
    connection.close()
    import django_rq

    django_rq.get_connection("ingest").flushdb()
    late_posts = 0
    with ingest_stack.stack(workers=args.workers) as base_url:
        interval = 1 / args.batches_per_second
        next_at = time.monotonic()
        for body in bodies:
            ingest_stack.post(base_url, token, body)
            next_at += interval
            pause = next_at - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            else:
                late_posts += 1
        while IngestBatch.objects.exclude(status=BatchStatus.DONE).exists():
            time.sleep(0.05)
    lags = []
    for received_at, finished_at, accepted in IngestBatch.objects.values_list(
        "received_at", "finished_at", "accepted"
    ):
        lags.extend([(finished_at - received_at).total_seconds()] * accepted)
    print(
        f"{len(lags):,} events at {args.rate:,}/s for {args.seconds} s in batches of "
        f"{batch_size} ({args.workers} worker(s); {late_posts} posts fell behind schedule)"
    )
    print(
        f"lag received->applied: p50 {percentile(lags, 0.5):.3f} s, "
        f"p99 {percentile(lags, 0.99):.3f} s, max {max(lags):.3f} s"
    )


if __name__ == "__main__":
    main()
