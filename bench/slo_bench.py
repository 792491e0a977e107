"""Benchmark of the service level objectives: what a read costs with 28 days of counters, and
what keeping the counters costs the writers.

Fills the counters of all three SLOs for every minute of the last 29 days (the most a read
ever looks at: 3 x 41,760 minute rows and their day rows), then times, in-process:
- `slos_status()` (the SLIs, budgets and burn rates: one query), `GET /api/slos` through the
  test client (routing, feed-token auth, JSON), and the panel's rows (`slo_panel_rows`: the
  status plus each SLO's 28-day budget series);
- the writers' upkeep: one `slo_count` (the statement a worker runs after each batch's commit,
  for freshness, and after a snapshot, for correctness), and the web process's in-memory count
  of an ingest answer (`IngestAnswerCounter.answer_count`) with its flush every 5 s.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/io_slo_bench flock /tmp/bench.lock \\
        .venv/bin/python bench/slo_bench.py [--reads 200]

WARNING: empties the SLO counters of that database (migrated if need be).
"""

import argparse
import datetime as dt
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "inventory_ops.settings")
os.environ.setdefault("DEBUG", "1")

import django

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402
from django.utils import timezone  # noqa: E402

from ingest.sources import feed_source_create  # noqa: E402
from slos.counters import (  # noqa: E402
    IngestAnswerCounter,
    _counting_transaction,
    slo_count,
    slo_counts_write,
)
from slos.models import MINUTE_S, Slo, SloCount  # noqa: E402
from slos.reads import slo_panel_rows, slos_status  # noqa: E402

DAYS_FILLED = 29


def counters_fill(now: dt.datetime) -> int:
    SloCount.objects.all().delete()
    last_minute = int(now.timestamp()) // MINUTE_S * MINUTE_S
    first_minute = last_minute - DAYS_FILLED * 86400
    chunk: dict = {}
    minutes = 0
    for minute in range(first_minute, last_minute + 1, MINUTE_S):
        minutes += 1
        for slo in Slo:
            chunk[(slo.value, minute)] = [995, 1000]
        if len(chunk) >= 3000:
            with transaction.atomic():
                slo_counts_write(chunk)
            chunk = {}
    with transaction.atomic():
        slo_counts_write(chunk)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {SloCount._meta.db_table}")  # as autovacuum would by now
    return minutes


def timed(function, repeats: int) -> tuple[float, float]:
    """p50 and p99 of `function()` in milliseconds."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.99))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=200)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    setup_test_environment()
    now = timezone.now()
    started = time.perf_counter()
    minutes = counters_fill(now)
    print(
        f"counters: {SloCount.objects.count():,} rows ({minutes:,} minutes of 3 SLOs and their "
        f"days) written in {time.perf_counter() - started:.1f} s; {connection.vendor}"
    )
    print(f"load average at the start: {os.getloadavg()[0]:.1f}")

    token = feed_source_create(name=f"slo-bench-{int(time.time())}").token
    client = Client(HTTP_HOST="127.0.0.1")
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/slos", headers=headers).status_code == 200
    for what, function in (
        ("slos_status()", slos_status),
        ("GET /api/slos", lambda: client.get("/api/slos", headers=headers)),
        ("slo_panel_rows() (the panel)", slo_panel_rows),
    ):
        p50, p99 = timed(function, args.reads)
        print(f"{what}: p50 {p50:.2f} ms, p99 {p99:.2f} ms ({args.reads} reads)")

    def one_count():
        with _counting_transaction():
            slo_count(Slo.FRESHNESS, good=999, total=1000)

    p50, p99 = timed(one_count, 1000)
    print(f"slo_count (a worker's count after a batch): p50 {p50:.3f} ms, p99 {p99:.3f} ms")
    counter = IngestAnswerCounter()
    count_p50, _ = timed(lambda: counter.answer_count(202), 10000)
    flush_p50, _ = timed(lambda: (counter.answer_count(202), counter.flush()), 200)
    print(
        f"ingest answer counted in memory: p50 {count_p50 * 1000:.1f} us; "
        f"a flush (one upsert): p50 {flush_p50:.3f} ms, once every 5 s per web process"
    )
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
