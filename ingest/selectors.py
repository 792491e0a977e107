"""Reads of the ingest domain."""

from datetime import datetime, timedelta
from uuid import UUID

from django.db.models import Count, Q, Sum
from django.utils import timezone

from ingest.models import BatchStatus, DeadLetter, FeedSource, IngestBatch

LAG_WINDOW = timedelta(minutes=15)
LAG_SAMPLES = 5000


def batch_report(*, batch_id: UUID, source: FeedSource) -> dict | None:
    """The batch API's answer for one of `source`'s batches (None if not theirs)."""
    batch = IngestBatch.objects.filter(pk=batch_id, source=source).defer("raw_body").first()
    if batch is None:
        return None
    rejections = [
        {"index": index, "event_id": event_id, "reason": reason, "status": status}
        for index, event_id, reason, status in DeadLetter.objects.filter(batch=batch)
        .order_by("index", "pk")
        .values_list("index", "event_id", "reason", "status")
    ]
    return {
        "batch_id": str(batch.pk),
        "source": source.name,
        "status": batch.status,
        "received_at": batch.received_at.isoformat(),
        "finished_at": batch.finished_at.isoformat() if batch.finished_at else None,
        "accepted": batch.accepted,
        "applied": batch.applied,
        "duplicates": batch.duplicates,
        "rejected": batch.rejected,
        "pending": batch.pending,
        "rejections": rejections,
    }


def sources_totals(*, sources=None) -> dict[int, dict]:
    """Per source: accepted = applied + duplicates + rejected + pending, over all batches."""
    batches = IngestBatch.objects.all()
    if sources is not None:
        batches = batches.filter(source__in=sources)
    names = ("accepted", "applied", "duplicates", "rejected", "held")
    rows = batches.values("source_id").annotate(
        **{f"sum_{name}": Sum(name) for name in names},
        sum_unprocessed=Sum("accepted", filter=~Q(status=BatchStatus.DONE)),
        batch_count=Count("pk"),
    )
    totals = {}
    for row in rows:
        sums = {name: row[f"sum_{name}"] or 0 for name in names}
        totals[row["source_id"]] = {
            "accepted": sums["accepted"],
            "applied": sums["applied"],
            "duplicates": sums["duplicates"],
            "rejected": sums["rejected"],
            # A batch not done yet has counted nothing: all of its events are pending.
            "pending": sums["held"] + (row["sum_unprocessed"] or 0),
            "batches": row["batch_count"],
        }
    return totals


def source_totals(*, source: FeedSource) -> dict:
    totals = sources_totals(sources=[source]).get(source.pk) or {
        "accepted": 0,
        "applied": 0,
        "duplicates": 0,
        "rejected": 0,
        "pending": 0,
    }
    totals.pop("batches", None)
    return {"source": source.name, **totals}


def _percentile(values: list[float], fraction: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    lower = int(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


def feeds_freshness(*, now: datetime | None = None) -> list[dict]:
    """Per active source: `{"source", "freshness_s", "lag_p95_s"}` (SPEC.md "feed freshness").

    freshness_s: now - newest occurred_at applied (None if nothing applied yet);
    lag_p95_s: p95 of applied time - received time over the batches finished in the last 15
    minutes (every event of a batch has its batch's lag; None if none). Two queries.
    """
    now = now or timezone.now()
    sources = list(
        FeedSource.objects.filter(is_active=True).values_list(
            "pk", "name", "newest_applied_occurred_at"
        )
    )
    lags: dict[int, list[float]] = {}
    recent = (
        IngestBatch.objects.filter(finished_at__gte=now - LAG_WINDOW, applied__gt=0)
        .order_by("-finished_at")
        .values_list("source_id", "received_at", "finished_at")[:LAG_SAMPLES]
    )
    for source_id, received_at, finished_at in recent:
        lags.setdefault(source_id, []).append((finished_at - received_at).total_seconds())
    return [
        {
            "source": name,
            "freshness_s": (now - newest).total_seconds() if newest else None,
            "lag_p95_s": _percentile(lags[pk], 0.95) if pk in lags else None,
        }
        for pk, name, newest in sources
    ]
