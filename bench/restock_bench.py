"""Benchmark of `/api/restock`: its p50 against `/api/kpis` for the same scope, at two
history sizes (10,000 and 1,000,000 movements by default).

Uses `kpi_bench`'s histories (generated with COPY into a database of their own per size,
`<name>_h<movements>`, rollups rebuilt with `rollups_rebuild`, which also rebuilds the
restocking demand buckets), then times in-process with the Django test client, the sizes and
the two endpoints alternated:

    DATABASE_URL=postgres://.../io_kpis flock /tmp/bench.lock \\
        .venv/bin/python bench/restock_bench.py [--movements 1000000] [--small 10000] [--reuse]

WARNING: as kpi_bench, it empties the stock, ledger and KPI tables of those databases.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from django.test import Client
from django.test.utils import CaptureQueriesContext, setup_test_environment

from bench.kpi_bench import connection, history_enter, history_prepare

REPEATS = 10  # requests per line, size and round
ROUNDS = 3  # alternations of the sizes
# (scope, URL): each restock read and the KPI read of the same scope it is compared with.
LINES = [
    (scope or "all", f"/api/{path}" + (f"{joiner}site={scope}" if scope else ""))
    for scope in ("", "S07")
    for path, joiner in (("restock", "?"), ("kpis?window=30d", "&"))
]


def time_lines(client: Client, histories: list[dict], repeats: int, rounds: int) -> dict:
    """p50 (ms), query count and restock count of every line at every size, alternated."""
    samples: dict = {(history["movements"], url): [] for history in histories for _, url in LINES}
    details: dict = {}
    for _ in range(rounds):
        for _scope, url in LINES:
            for history in histories:
                history_enter(history)
                headers = {"HTTP_AUTHORIZATION": f"Bearer {history['token']}"}
                for _ in range(2):  # a new connection and cold caches: not timed
                    assert client.get(url, **headers).status_code == 200
                key = (history["movements"], url)
                if key not in details:
                    with CaptureQueriesContext(connection) as queries:
                        body = client.get(url, **headers).json()
                    details[key] = (len(queries.captured_queries), body.get("count"))
                for _ in range(repeats):
                    began = time.perf_counter()
                    response = client.get(url, **headers)
                    samples[key].append((time.perf_counter() - began) * 1000)
                    assert response.status_code == 200, response.content
    return {key: (statistics.median(values), *details[key]) for key, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--movements", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--reuse", action="store_true", help="reuse kpi_bench's histories")
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("set DATABASE_URL to a PostgreSQL database (see WARNING above)")
    setup_test_environment()
    args.repeats, args.rounds = REPEATS, ROUNDS
    base_name = connection.settings_dict["NAME"]
    histories = []
    for label, movements in (("small", args.small), ("large", args.movements)):
        print(f"== {label} history ({movements:,} movements)")
        histories.append(history_prepare(movements, base_name, args.reuse))
        with connection.cursor() as cursor:  # as autovacuum would, before the reads
            cursor.execute("VACUUM ANALYZE dashboards_restockstate")
    print(f"== {args.rounds} rounds of {args.repeats} requests per line and size, alternated")
    timings = time_lines(Client(), histories, args.repeats, args.rounds)
    for _scope, url in LINES:
        cells = []
        for history in histories:
            p50, queries, count = timings[history["movements"], url]
            shown = "" if count is None else f", {count:,} to restock"
            cells.append(
                f"{history['movements']:>9,}: p50 {p50:7.2f} ms ({queries} queries{shown})"
            )
        print(f"  {url:<32} " + "  ".join(cells))
    print("== /api/restock p50 / /api/kpis?window=30d p50, same scope (target <= 2)")
    for history in histories:
        for scope in ("all", "S07"):
            restock_url, kpis_url = [url for line_scope, url in LINES if line_scope == scope]
            ratio = (
                timings[history["movements"], restock_url][0]
                / timings[history["movements"], kpis_url][0]
            )
            print(f"  {history['movements']:>9,} movements, scope={scope:<4} ratio {ratio:5.2f}")
    small, large = histories
    for scope in ("all", "S07"):
        restock_url = next(url for line_scope, url in LINES if line_scope == scope)
        growth = (
            timings[large["movements"], restock_url][0]
            / timings[small["movements"], restock_url][0]
        )
        print(f"  /api/restock scope={scope:<4} large / small p50 {growth:5.2f} (target <= 1.5)")


if __name__ == "__main__":
    main()
