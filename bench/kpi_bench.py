"""Benchmark of the KPI engine: `/api/kpis` read time at two history sizes, and `rebuild_kpis`.

Generates a history straight into PostgreSQL with COPY (not through the services: the point is
the read side), rebuilds the rollups from it with `rollups_rebuild` (timed: that is the
`rebuild_kpis` figure), then times `GET /api/kpis` in-process (Django test client: URL routing,
feed-token auth, KPI computation, JSON) for every scope and window.

    DATABASE_URL=postgres://.../io_kpis flock /tmp/bench.lock \\
        .venv/bin/python bench/kpi_bench.py [--movements 1000000] [--small 10000] [--reuse]

WARNING: it empties the stock, ledger and KPI tables of the database it is given.

`--reuse` keeps each history in a database of its own (`<name>_h<movements>`, created and
migrated if missing) and generates it only once (the database's comment records the size, the
seed and the generation instant); the rollups are still rebuilt every run, since the code under
test may have changed them. The reads then run with the clock set back to the generation
instant (plus the time elapsed since the reads began), so every window sees the same history
as on the day it was generated.
"""

import argparse
import datetime as dt
import json
import os
import random
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "inventory_ops.settings")

import django

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext, setup_test_environment  # noqa: E402
from django.utils import timezone  # noqa: E402

from dashboards.kpis import WINDOWS  # noqa: E402
from dashboards.rollups import (  # noqa: E402
    DELIVERY_COLUMNS,
    ORDER_LINE_COLUMNS,
    fulfillment_bin,
    rollups_rebuild,
)
from ingest.services import feed_source_create  # noqa: E402

SITES = 20
SKUS = 5000
DAYS = 30
ORDERS_PER_MILLION = 200_000
TABLES = [
    "dashboards_kpibucket",
    "dashboards_fulfillmentbin",
    "dashboards_deliveryrecord",
    "dashboards_orderlinerecord",
    "dashboards_snapshotrecord",
    "dashboards_unitcostchange",
    "dashboards_revaluation",
    "dashboards_stockstatus",
    "dashboards_stocktroublecount",
    "inventory_ops_movement",
    "inventory_ops_stocklevel",
    "inventory_ops_sitereorderpoint",
    "inventory_ops_sku",
    "inventory_ops_site",
    "ingest_feedsource",
]


def copy_rows(table: str, columns: list[str], rows) -> int:
    written = 0
    sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
    with connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:
        for row in rows:
            copy.write_row(row)
            written += 1
    return written


def generate(movements_target: int, now: dt.datetime, seed: int = 7) -> dict:
    """Write sites, SKUs, a ledger of about `movements_target` rows and the KPI facts."""
    rng = random.Random(seed)
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
    copy_rows(
        "inventory_ops_site",
        ["id", "code", "name", "timezone"],
        ([i, f"S{i:02d}", f"Site {i}", "UTC"] for i in range(1, SITES + 1)),
    )
    copy_rows(
        "inventory_ops_sku",
        ["id", "code", "name", "unit_cost", "reorder_point"],
        (
            [i, f"SKU{i:05d}", f"Product {i}", Decimal(rng.randint(50, 50000)) / 100, 5]
            for i in range(1, SKUS + 1)
        ),
    )
    start = now - dt.timedelta(days=DAYS)
    span_s = DAYS * 86400
    orders = max(1, movements_target * ORDERS_PER_MILLION // 1_000_000)
    movement_rows = []
    delivery_rows = []
    line_rows = []
    for order in range(orders):
        site = rng.randint(1, SITES)
        created = start + dt.timedelta(seconds=rng.random() * span_s)
        dispatched = created + dt.timedelta(seconds=rng.randint(600, 6 * 3600))
        delivered = dispatched + dt.timedelta(seconds=rng.randint(1200, 3 * 3600))
        for line in range(rng.choice((1, 1, 2))):
            sku = rng.randint(1, SKUS)
            qty = rng.randint(1, 3)
            movement_rows.append((site, sku, "order_reserved", 0, qty, created))
            if dispatched < now:
                movement_rows.append((site, sku, "order_dispatched", -qty, -qty, dispatched))
            line_rows.append([site, sku, created, qty, f"o{order}", line == 0])
        if delivered < now:
            fulfillment_us = (delivered - created) // dt.timedelta(microseconds=1)
            delivery_rows.append(
                [
                    site,
                    delivered,
                    rng.random() < 0.97,
                    rng.randint(300, 1500) * 100,
                    created,
                    fulfillment_us,
                    fulfillment_bin(fulfillment_us),
                ]
            )
    ordered_pairs = [(row[0], row[1]) for row in line_rows]
    while len(movement_rows) < movements_target:
        # Mostly stock that is also ordered, so that most levels are healthy, as in a real
        # warehouse (the "now" KPIs read only the levels in trouble).
        if ordered_pairs and rng.random() < 0.85:
            site, sku = rng.choice(ordered_pairs)
        else:
            site, sku = rng.randint(1, SITES), rng.randint(1, SKUS)
        at = start + dt.timedelta(seconds=rng.random() * span_s)
        roll = rng.random()
        if roll < 0.6:
            movement_rows.append((site, sku, "received", rng.randint(5, 40), 0, at))
        elif roll < 0.75:
            movement_rows.append((site, sku, "counted", rng.choice((0, 0, 0, -1, 1, -2)), 0, at))
        elif roll < 0.9:
            movement_rows.append((site, sku, "adjusted", rng.choice((-3, -1, 2)), 0, at))
        else:
            movement_rows.append((site, sku, "order_returned", 1, 0, at))
    written = copy_rows(
        "inventory_ops_movement",
        [
            "site_id",
            "sku_id",
            "kind",
            "on_hand_delta",
            "reserved_delta",
            "on_hand_after",
            "reserved_after",
            "occurred_at",
            "recorded_at",
            "cause",
            "cause_ref",
        ],
        # on_hand_after is not the running balance here: the KPI engine never reads it.
        (
            [s, k, kind, d, r, 0, 0, at, now, "feed_event", ""]
            for s, k, kind, d, r, at in movement_rows
        ),
    )
    copy_rows(
        "dashboards_deliveryrecord",
        list(DELIVERY_COLUMNS),
        delivery_rows,
    )
    copy_rows(
        "dashboards_orderlinerecord",
        list(ORDER_LINE_COLUMNS),
        line_rows,
    )
    snapshot_rows = []
    for site in range(1, SITES + 1):
        for day in range(DAYS):
            lines = [
                [rng.randint(1, SKUS), rng.randint(0, 50), rng.randint(0, 50)] for _ in range(50)
            ]
            snapshot_rows.append(
                [
                    site,
                    start + dt.timedelta(days=day, hours=2),
                    json.dumps(lines),
                    50,
                    sum(1 for _, a, b in lines if a != b),
                    sum(abs(a - b) for _, a, b in lines),
                ]
            )
    copy_rows(
        "dashboards_snapshotrecord",
        ["site_id", "occurred_at", "lines", "line_count", "mismatched_lines", "unit_difference"],
        snapshot_rows,
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO inventory_ops_stocklevel (site_id, sku_id, on_hand, reserved, updated_at) "
            "SELECT site_id, sku_id, SUM(on_hand_delta), SUM(reserved_delta), now() "
            "FROM inventory_ops_movement GROUP BY site_id, sku_id"
        )
        for table in TABLES:
            cursor.execute(f"VACUUM ANALYZE {table}")
    return {
        "movements": written,
        "orders": orders,
        "deliveries": len(delivery_rows),
        "order_lines": len(line_rows),
    }


def time_api(client: Client, token: str, repeats: int) -> dict:
    timings = {}
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    for scope in ("", "S07"):
        for window in WINDOWS:
            url = f"/api/kpis?window={window}" + (f"&site={scope}" if scope else "")
            for _ in range(3):
                assert client.get(url, **headers).status_code == 200
            # Queries are counted on one more request, not in the timed ones: recording them
            # (the debug cursor) would add its own cost to every query timed.
            with CaptureQueriesContext(connection) as queries:
                assert client.get(url, **headers).status_code == 200
            query_count = len(queries.captured_queries)  # a view of the log: read it now
            samples = []
            for _ in range(repeats):
                began = time.perf_counter()
                response = client.get(url, **headers)
                samples.append((time.perf_counter() - began) * 1000)
                assert response.status_code == 200, response.content
            timings[(scope or "all", window)] = (
                statistics.median(samples),
                query_count,
            )
    return timings


SEED = 7


def database_use(name: str) -> None:
    """Point the default connection at another database of the same server."""
    connection.close()
    connection.settings_dict["NAME"] = name


def history_reuse(movements: int, base_name: str) -> tuple[dt.datetime, dict | None]:
    """Switch to this size's own database; return its generation instant and counts if it
    already holds the history (else a new instant and None: generate it)."""
    name = f"{base_name}_h{movements}"
    database_use(base_name)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
            [name],
        )
        row = cursor.fetchone()
        if row is None:
            cursor.execute(f'CREATE DATABASE "{name}"')
    database_use(name)
    call_command("migrate", verbosity=0, interactive=False)
    marker = json.loads(row[0]) if row and row[0] else {}
    if marker.get("movements") == movements and marker.get("seed") == SEED:
        return dt.datetime.fromisoformat(marker["now"]), marker["counts"]
    return dt.datetime.now(dt.UTC), None


def history_mark(movements: int, now: dt.datetime, counts: dict) -> None:
    marker = json.dumps(
        {"movements": movements, "seed": SEED, "now": now.isoformat(), "counts": counts}
    )
    with connection.cursor() as cursor:
        # A utility statement takes no parameters; the marker is our own JSON of numbers.
        literal = marker.replace("'", "''")
        cursor.execute(f"COMMENT ON DATABASE \"{connection.settings_dict['NAME']}\" IS '{literal}'")


def clock_set(moment: dt.datetime) -> None:
    """Make `timezone.now()` start again from `moment` (the reads of a reused history)."""
    offset = moment - dt.datetime.now(dt.UTC)
    timezone.now = lambda: dt.datetime.now(dt.UTC) + offset


def run(movements: int, repeats: int, *, reuse_base: str | None = None) -> tuple[dict, float, dict]:
    now, counts = dt.datetime.now(dt.UTC), None
    if reuse_base:
        now, counts = history_reuse(movements, reuse_base)
    began = time.perf_counter()
    if counts is None:
        counts = generate(movements, now, SEED)
        if reuse_base:
            history_mark(movements, now, counts)
    generated = time.perf_counter() - began
    began = time.perf_counter()
    rollups_rebuild()
    rebuild_s = time.perf_counter() - began
    with connection.cursor() as cursor:  # as autovacuum would, before the reads
        for table in TABLES[:9]:
            cursor.execute(f"VACUUM ANALYZE {table}")
    with connection.cursor() as cursor:  # a reused history keeps the last run's source
        cursor.execute("TRUNCATE ingest_feedsource CASCADE")
    token = feed_source_create(name=f"bench-{movements}").token
    if reuse_base:
        clock_set(now + dt.timedelta(seconds=1))
    timings = time_api(Client(), token, repeats)
    print(
        f"history: {counts['movements']:,} movements, {counts['orders']:,} orders, "
        f"{counts['deliveries']:,} deliveries, {SITES} sites, {SKUS:,} SKUs over {DAYS} days "
        f"({'reused' if generated < 1 and reuse_base else f'generated in {generated:.1f} s'})"
    )
    print(f"rollups_rebuild (rebuild_kpis): {rebuild_s:.1f} s")
    for (scope, window), (p50, queries) in timings.items():
        print(
            f"  /api/kpis scope={scope:<4} window={window:<4} p50 {p50:6.2f} ms, "
            f"{queries:.0f} queries"
        )
    return timings, rebuild_s, counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--movements", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument(
        "--reuse", action="store_true", help="keep and reuse each generated history (see above)"
    )
    args = parser.parse_args()
    reuse_base = connection.settings_dict["NAME"] if args.reuse else None
    if connection.vendor != "postgresql":
        sys.exit("set DATABASE_URL to a PostgreSQL database (it will be emptied)")
    setup_test_environment()
    print(f"== small history ({args.small:,} movements)")
    small, _, _ = run(args.small, args.repeats, reuse_base=reuse_base)
    print(f"== large history ({args.movements:,} movements)")
    large, rebuild_s, _ = run(args.movements, args.repeats, reuse_base=reuse_base)
    print("== p50 ratio large / small (target <= 1.5), p50 at large size (target <= 20 ms)")
    worst = 0.0
    for key, (p50, _) in large.items():
        ratio = p50 / small[key][0]
        worst = max(worst, ratio)
        print(f"  scope={key[0]:<4} window={key[1]:<4} {p50:6.2f} ms  ratio {ratio:4.2f}")
    print(
        f"worst ratio {worst:.2f}; slowest p50 {max(p for p, _ in large.values()):.2f} ms; "
        f"rebuild {rebuild_s:.1f} s (target <= 60 s)"
    )


if __name__ == "__main__":
    main()
