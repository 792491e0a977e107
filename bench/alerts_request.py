"""What asking for alert evaluations costs a writer, and how a burst is coalesced.

Calls `alerts_evaluation_request` the way `scopes_changed_announce` does after each committed
batch, N times in a row over a few sites, with no worker running; prints the cost per call and
how many evaluation jobs were enqueued. Then times one evaluation of R rules (KPIs as
`kpis_compute` gives them in this deployment).

Uses (and empties) the Redis DB of REDIS_URL: point it at a DB of your own.

    DATABASE_URL=... REDIS_URL=redis://127.0.0.1:6379/4 flock /tmp/bench.lock \
        .venv/bin/python bench/alerts_request.py --calls 10000 --rules 50
"""

import argparse
import os
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "inventory_ops.settings")

import django

django.setup()

import django_rq  # noqa: E402

from ledger.models import Site  # noqa: E402
from oncall.alerts import alerts_evaluation_request  # noqa: E402
from oncall.models import AlertKind, AlertRule  # noqa: E402
from oncall.services import alerts_evaluate  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--rules", type=int, default=50)
    args = parser.parse_args()

    connection = django_rq.get_connection("default")
    connection.flushdb()
    sites = ["ams-dc", "rtm-hub", "utr-hub", "ehv-store"]
    durations = []
    for call in range(args.calls):
        started = time.perf_counter()
        alerts_evaluation_request(site_codes=[sites[call % len(sites)]])
        durations.append(time.perf_counter() - started)
    jobs = django_rq.get_queue("default").count
    durations.sort()
    print(
        f"alerts_evaluation_request x {args.calls}: "
        f"median {statistics.median(durations) * 1e6:.0f} µs, "
        f"p99 {durations[int(len(durations) * 0.99)] * 1e6:.0f} µs per call; "
        f"{jobs} evaluation job(s) enqueued"
    )

    site_ids = list(Site.objects.values_list("pk", flat=True)) or [None]
    AlertRule.objects.filter(name__startswith="bench-").delete()
    kinds = [
        AlertKind.NEGATIVE_STOCK,
        AlertKind.STOCKOUTS,
        AlertKind.FAILED_JOBS,
        AlertKind.FEED_SILENT,
    ]
    AlertRule.objects.bulk_create(
        AlertRule(
            name=f"bench-{n}",
            kind=kinds[n % len(kinds)],
            site_id=site_ids[n % len(site_ids)],
            threshold=Decimal(10**9),
        )
        for n in range(args.rules)
    )
    try:
        for label in ("first (creates each rule's state)", "steady state", "steady state"):
            started = time.perf_counter()
            alerts_evaluate(site_codes=None)
            elapsed_ms = (time.perf_counter() - started) * 1e3
            print(f"alerts_evaluate over {args.rules} rules, {label}: {elapsed_ms:.0f} ms")
    finally:
        AlertRule.objects.filter(name__startswith="bench-").delete()
        connection.flushdb()


if __name__ == "__main__":
    main()
