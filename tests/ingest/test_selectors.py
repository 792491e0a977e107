"""Reads: feed freshness for the KPI API, conservation totals."""

from datetime import timedelta

import numpy
import pytest
from django.utils import timezone

from ingest.models import IngestBatch
from ingest.selectors import feeds_freshness, sources_totals
from tests.builders import site_make, sku_make
from tests.ingest.helpers import batch_apply, received, source_make

pytestmark = pytest.mark.django_db


def test_feeds_freshness_per_source_in_one_query(django_assert_num_queries):
    # given a source whose newest applied event happened 10 minutes ago, in a batch applied
    # 2 s after it was received, and a source that sent nothing
    site_make("north")
    sku_make("A")
    busy, _ = source_make("busy")
    source_make("silent")
    now = timezone.now()
    newest = (now - timedelta(minutes=10)).isoformat()
    older = (now - timedelta(minutes=50)).isoformat()
    batch_apply(busy, [received("A", 1, occurred_at=older), received("A", 1, occurred_at=newest)])
    batch = IngestBatch.objects.get()
    IngestBatch.objects.filter(pk=batch.pk).update(
        finished_at=batch.received_at + timedelta(seconds=2)
    )
    # when the KPI API asks
    with django_assert_num_queries(1):
        feeds = feeds_freshness(now=now)
    # then
    assert feeds == [
        {"source": "busy", "freshness_s": pytest.approx(600.0), "lag_p95_s": pytest.approx(2.0)},
        {"source": "silent", "freshness_s": None, "lag_p95_s": None},
    ]
    # lag samples older than 15 minutes no longer count
    later = feeds_freshness(now=now + timedelta(minutes=20))
    assert later[0]["lag_p95_s"] is None


def test_the_lag_p95_interpolates_between_closest_ranks_like_numpy():
    # given 20 applied batches of one source, applied 0.5 s, 1.0 s, ... 10 s after they came
    site_make("north")
    sku_make("A")
    source, _ = source_make("busy")
    lags = [0.5 * (index + 1) for index in range(20)]
    for index in range(20):
        batch_apply(source, [received("A", 1, event_id=f"e{index}")])
    now = timezone.now()
    for batch, lag in zip(IngestBatch.objects.order_by("received_at"), lags, strict=True):
        IngestBatch.objects.filter(pk=batch.pk).update(
            finished_at=batch.received_at + timedelta(seconds=lag)
        )

    (feed,) = feeds_freshness(now=now)

    # then the p95 is numpy's: 9.5 + 0.05 x (10.0 - 9.5)
    assert feed["lag_p95_s"] == pytest.approx(float(numpy.percentile(lags, 95)), abs=1e-6)


def test_sources_totals_add_up():
    site_make("north")
    sku_make("A")
    source, _ = source_make()
    batch_apply(source, [received("A", 1, event_id="a"), received("Z", 1, event_id="b")])
    batch_apply(source, [received("A", 1, event_id="a")])
    totals = sources_totals()[source.pk]
    assert totals == {
        "accepted": 3,
        "applied": 1,
        "duplicates": 1,
        "rejected": 1,
        "pending": 0,
        "batches": 2,
    }
