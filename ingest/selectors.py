"""Reads of the ingest domain."""

from datetime import UTC, datetime, timedelta
from uuid import UUID

from django.db import connection
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from ingest.models import DeadLetter, FeedSource, IngestBatch, SourceEventTotals

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
    """Per source: accepted = applied + duplicates + rejected + pending, over all batches.

    Read from the totals the database keeps (SourceEventTotals): one row a source, however
    many batches are stored."""
    rows = SourceEventTotals.objects.all()
    if sources is not None:
        rows = rows.filter(source__in=sources)
    return {
        row.source_id: {
            "accepted": row.accepted,
            "applied": row.applied,
            "duplicates": row.duplicates,
            "rejected": row.rejected,
            "pending": row.accepted - row.applied - row.duplicates - row.rejected,
            "batches": row.batches,
        }
        for row in rows
    }


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


def _aware(moment) -> datetime | None:
    """A datetime read by raw SQL as an aware UTC datetime (SQLite gives naive ones or text)."""
    if isinstance(moment, str):
        moment = parse_datetime(moment)
    if moment is not None and moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment


def feeds_freshness(*, now: datetime | None = None) -> list[dict]:
    """Per active source: `{"source", "freshness_s", "lag_p95_s"}` (docs/kpis.md "feed freshness").

    freshness_s: now - newest occurred_at applied (None if nothing applied yet);
    lag_p95_s: p95 of applied time - received time over the batches finished in the last 15
    minutes (every event of a batch has its batch's lag; None if none). One query, written by
    hand: every `/api/kpis` read runs it, and the ORM took longer to build two queries than
    the database took to answer them.
    """
    now = now or timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(*feeds_freshness_statement(now=now))
        return feeds_freshness_fold(cursor.fetchall(), now=now)


def feeds_freshness_statement(*, now: datetime) -> tuple[str, list]:
    """The SQL of `feeds_freshness` and its parameters (the KPI read sends it with its own).

    On PostgreSQL the p95 is computed by the database (`percentile_cont` interpolates as
    `_percentile` does): at a steady 10 batches/s the lag window holds the full LAG_SAMPLES
    batches, and fetching them (two timestamps each) to sort them in Python cost ~10 ms of CPU
    in every KPI read, which a live dashboard makes every few hundred milliseconds.
    """
    sources = FeedSource._meta.db_table
    batches = IngestBatch._meta.db_table
    params = [connection.ops.adapt_datetimefield_value(now - LAG_WINDOW), LAG_SAMPLES]
    if connection.vendor == "postgresql":
        sql = (
            # Only our table names are interpolated; values are parameters.
            "SELECT source.id, source.name, source.newest_applied_occurred_at, "  # noqa: S608
            "recent.lag_p95_s FROM "
            f"{sources} source LEFT JOIN (SELECT source_id, percentile_cont(0.95) WITHIN GROUP "
            "(ORDER BY EXTRACT(EPOCH FROM finished_at - received_at)::float8) AS lag_p95_s "
            f"FROM (SELECT source_id, received_at, finished_at FROM {batches} "
            "WHERE finished_at >= %s AND applied > 0 ORDER BY finished_at DESC LIMIT %s) latest "
            "GROUP BY source_id) recent ON recent.source_id = source.id "
            "WHERE source.is_active ORDER BY source.name, source.id"
        )
        return sql, params
    sql = (
        # Only our table names are interpolated; values are parameters.
        "SELECT source.id, source.name, source.newest_applied_occurred_at, "  # noqa: S608
        "recent.received_at, recent.finished_at "
        f"FROM {sources} source LEFT JOIN (SELECT source_id, received_at, finished_at "
        f"FROM {batches} WHERE finished_at >= %s AND applied > 0 "
        "ORDER BY finished_at DESC LIMIT %s) recent ON recent.source_id = source.id "
        "WHERE source.is_active ORDER BY source.name, source.id"
    )
    return sql, params


def feeds_freshness_fold(rows, *, now: datetime) -> list[dict]:
    """`feeds_freshness` from the rows of its statement: one per source with its p95
    (PostgreSQL), or one per source and lag sample."""
    feeds: dict[int, dict] = {}
    lags: dict[int, list[float]] = {}
    for pk, name, newest, *lag in rows:
        if pk not in feeds:
            newest = _aware(newest)
            feeds[pk] = {
                "source": name,
                "freshness_s": (now - newest).total_seconds() if newest else None,
                "lag_p95_s": None,
            }
        if len(lag) == 1:
            feeds[pk]["lag_p95_s"] = None if lag[0] is None else float(lag[0])
            continue
        received_at, finished_at = lag
        if finished_at is not None:
            lags.setdefault(pk, []).append(
                (_aware(finished_at) - _aware(received_at)).total_seconds()
            )
    for pk, samples in lags.items():
        feeds[pk]["lag_p95_s"] = _percentile(samples, 0.95)
    return list(feeds.values())
