"""Benchmark of `as_of`: `/api/kpis` and `/api/stock` at past instants against the same reads
now, at two history sizes (the KPI benchmark's histories: 20 sites, 5,000 SKUs, 30 days).

    DATABASE_URL=postgres://.../io_asof_bench flock /tmp/bench.lock \\
        .venv/bin/python bench/as_of_bench.py [--movements 1000000] [--small 10000] [--reuse]
        [--repeats 10] [--rounds 3]

Uses `bench/kpi_bench.py` to generate (or, with `--reuse`, keep) each history in a database of
its own (`<name>_h<movements>`; WARNING: its stock, ledger and KPI tables are emptied) and to
rebuild its rollups, stock checkpoints included. Every line is timed in-process (Django test
client, feed token), the sizes and instants alternated, p50 over all requests of a line.
Prints the p50 of each read now and at 1 hour, 15 days and 29 days back, its ratio to now,
and the ratio of the large history to the small one.
"""

import argparse
import datetime as dt
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from django.db import connection
from django.test import Client
from django.test.utils import setup_test_environment

from bench.kpi_bench import history_enter, history_prepare

BACK = {"now": None, "1h": dt.timedelta(hours=1), "15d": dt.timedelta(days=15)}
BACK["29d"] = dt.timedelta(days=29)
READS = {
    "kpis all 1h": "/api/kpis?window=1h",
    "kpis S07 1h": "/api/kpis?window=1h&site=S07",
    "kpis S07 30d": "/api/kpis?window=30d&site=S07",
    "stock S07": "/api/stock?site=S07",
}


def url_at(url: str, history: dict, back: dt.timedelta | None) -> str:
    if back is None:
        return url
    return f"{url}&as_of={quote((history['now'] - back).isoformat())}"


def time_reads(client: Client, histories: list[dict], repeats: int, rounds: int) -> dict:
    samples: dict = {}
    for name, url in READS.items():
        for _ in range(rounds):
            for history in histories:
                history_enter(history)
                headers = {"HTTP_AUTHORIZATION": f"Bearer {history['token']}"}
                for back_name, back in BACK.items():
                    target = url_at(url, history, back)
                    for _ in range(2):  # a new connection and cold caches: not timed
                        response = client.get(target, **headers)
                        assert response.status_code == 200, response.content
                    values = samples.setdefault((history["movements"], name, back_name), [])
                    for _ in range(repeats):
                        began = time.perf_counter()
                        response = client.get(target, **headers)
                        values.append((time.perf_counter() - began) * 1000)
                        assert response.status_code == 200, response.content
    return {key: statistics.median(values) for key, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--movements", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reuse", action="store_true")
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("set DATABASE_URL to a PostgreSQL database (see WARNING above)")
    setup_test_environment()
    base_name = connection.settings_dict["NAME"]
    histories = []
    for label, movements in (("small", args.small), ("large", args.movements)):
        print(f"== {label} history ({movements:,} movements)")
        histories.append(history_prepare(movements, base_name, args.reuse))
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE dashboards_stockcheckpoint")
            cursor.execute("SELECT COUNT(*) FROM dashboards_stockcheckpoint")
            print(f"stock checkpoints: {cursor.fetchone()[0]:,}")
            cursor.execute("SELECT COUNT(*) FROM inventory_ops_stocklevel")
            print(f"stock levels (pairs): {cursor.fetchone()[0]:,}")
    print(f"== p50 (ms), {args.rounds} rounds of {args.repeats} requests per line")
    p50 = time_reads(Client(), histories, args.repeats, args.rounds)
    small, large = (history["movements"] for history in histories)
    header = "".join(f"{back:>16}" for back in BACK)
    print(f"{'read':<16}{'size':>10}{header}")
    for name in READS:
        for size in (small, large):
            now_p50 = p50[size, name, "now"]
            cells = "".join(
                f"{p50[size, name, back]:8.2f} ({p50[size, name, back] / now_p50:4.1f}x)"
                if back != "now"
                else f"{now_p50:16.2f}"
                for back in BACK
            )
            print(f"{name:<16}{size:>10,}{cells}")
        flat = [p50[large, name, back] / p50[small, name, back] for back in BACK]
        print(f"{'':<16}{'large/small':>10}" + "".join(f"{ratio:16.2f}" for ratio in flat))


if __name__ == "__main__":
    main()
