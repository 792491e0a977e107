"""Reads of the ingest domain.

CONTRACT (stub until the ingest issue lands): `feeds_freshness` answers the `feeds` list of
`GET /api/kpis` with a bounded number of queries.
"""

from datetime import datetime


def feeds_freshness(*, now: datetime | None = None) -> list[dict]:
    """Per active source: `{"source", "freshness_s", "lag_p95_s"}` (SPEC.md "feed freshness").

    freshness_s: now - newest occurred_at applied (None if nothing applied yet);
    lag_p95_s: p95 of applied time - received time over recent events (None if none).
    """
    return []
