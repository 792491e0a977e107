"""Shared set-up of the ingest benchmarks: a catalog, a source, simulator batches."""

import json
import os
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "inventory_ops.settings")

import django  # noqa: E402

django.setup()

from ingest.models import FeedSource  # noqa: E402
from ingest.simulation import ROLES, FeedSimulator, SimulationMix  # noqa: E402
from ingest.sources import feed_source_create, feed_source_rotate_token  # noqa: E402
from ledger.catalog import SiteRow, SkuRow  # noqa: E402
from ledger.services import catalog_import  # noqa: E402

BENCH_SITES = [f"bench-site-{n}" for n in range(8)]
BENCH_SKUS = [f"BENCH-{n:04d}" for n in range(500)]


def catalog_ensure() -> None:
    catalog_import(
        sites=[SiteRow(code, code, "UTC") for code in BENCH_SITES],
        skus=[SkuRow(code, code, Decimal("1.25"), 10) for code in BENCH_SKUS],
    )


def source_token(name: str = "bench") -> str:
    source = FeedSource.objects.filter(name=name).first()
    if source is None:
        token = feed_source_create(name=name).token
        source = FeedSource.objects.get(name=name)
    else:
        token = feed_source_rotate_token(source=source)
    FeedSource.objects.filter(pk=source.pk).update(rate_limit_per_minute=10_000_000)
    return token


def simulator_batches(*, total: int, batch_size: int, seed: int = 1) -> list[str]:
    """JSON bodies of `batch_size` events, mixed as the simulator makes them (no malformed
    events or re-sends: each body is one source's view, all roles interleaved)."""
    mix = SimulationMix(malformed=0.0, resend=0.0, dispatch_delay=(1, 5), delivery_delay=(1, 10))
    simulator = FeedSimulator(sites=BENCH_SITES, skus=BENCH_SKUS, seed=seed, mix=mix)
    now = datetime.now(UTC)
    events: list[dict] = []
    second = 0
    while len(events) < total:
        ticked = simulator.tick(now=now + timedelta(seconds=second), count=batch_size)
        second += 1
        for role in ROLES:
            events.extend(ticked[role])
    events = events[:total]
    return [
        json.dumps({"events": events[start : start + batch_size]})
        for start in range(0, total, batch_size)
    ]
