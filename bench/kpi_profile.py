"""Where a `GET /api/kpis` spends its time, on a history left by `kpi_bench.py --reuse`.

    DATABASE_URL=postgres://.../io_kpis_bench_h1000000 flock /tmp/bench.lock \\
        .venv/bin/python bench/kpi_profile.py [--window 30d] [--site S07] [--explain]

Times the request in-process (as kpi_bench does) with the clock set back to the history's
generation instant, prints the cProfile of 50 requests (cumulative time, top functions) and,
with `--explain`, EXPLAIN (ANALYZE, BUFFERS) of every query of one request.
"""

import argparse
import cProfile
import datetime as dt
import json
import os
import pstats
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "inventory_ops.settings")

import django

django.setup()

from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext, setup_test_environment  # noqa: E402
from django.utils import timezone  # noqa: E402

from ingest.sources import feed_source_create  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", default="30d")
    parser.add_argument("--site", default="")
    parser.add_argument("--explain", action="store_true")
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args()
    setup_test_environment()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
            [connection.settings_dict["NAME"]],
        )
        marker = json.loads(cursor.fetchone()[0])
        cursor.execute("TRUNCATE ingest_feedsource CASCADE")
    generated_at = dt.datetime.fromisoformat(marker["now"])
    offset = generated_at + dt.timedelta(seconds=1) - dt.datetime.now(dt.UTC)
    timezone.now = lambda: dt.datetime.now(dt.UTC) + offset
    token = feed_source_create(name="profile").token
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    url = f"/api/kpis?window={args.window}" + (f"&site={args.site}" if args.site else "")
    for _ in range(5):
        assert client.get(url).status_code == 200
    samples = []
    for _ in range(30):
        began = time.perf_counter()
        client.get(url)
        samples.append((time.perf_counter() - began) * 1000)
    print(f"{url}: p50 {statistics.median(samples):.2f} ms (no profiler)")
    with CaptureQueriesContext(connection) as queries:
        client.get(url)
    for query in queries.captured_queries:
        print(f"  {query['time']} s  {query['sql'][:150]}")
    with connection.cursor() as cursor:
        for query in queries.captured_queries:
            took = []
            for _ in range(20):
                began = time.perf_counter()
                cursor.execute(query["sql"])
                cursor.fetchall()
                took.append((time.perf_counter() - began) * 1000)
            print(f"  {statistics.median(took):6.2f} ms alone  {query['sql'][:90]}")
    if args.explain:
        with connection.cursor() as cursor:
            for query in queries.captured_queries:
                cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + query["sql"])
                print("\n".join(row[0] for row in cursor.fetchall()), "\n")
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(50):
        client.get(url)
    profiler.disable()
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(args.top)
    pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
