"""Exact fulfillment-time percentiles of a window, from its histogram and order statistics."""

from collections import defaultdict
from decimal import Decimal

from django.db import connection

from core.db import datetime_param
from kpis.models import (
    DeliveryRecord,
)
from kpis.windows import PERCENTILES, WindowState


def _percentiles(state: WindowState, site_id: int | None) -> dict[str, float | None]:
    """Exact percentiles with linear interpolation between closest ranks (numpy's default)."""
    population = sum(state.bins.values())
    if population == 0:
        return dict.fromkeys(PERCENTILES)
    wanted: dict[str, tuple[int, Decimal]] = {}
    ranks: set[int] = set()
    for key, fraction in PERCENTILES.items():
        position = (population - 1) * fraction
        lower = int(position)
        wanted[key] = (lower, position - lower)
        ranks.add(lower)
        if position != lower:
            ranks.add(lower + 1)
    values = _order_statistics(state, site_id, sorted(ranks))
    result = {}
    for key, (lower, weight) in wanted.items():
        low_value = Decimal(values[lower])
        value = low_value
        if weight:
            value = low_value + weight * (Decimal(values[lower + 1]) - low_value)
        result[key] = float(value.scaleb(-6))
    return result


def _order_statistics(state: WindowState, site_id: int | None, ranks: list[int]) -> dict:
    """The fulfillment times (µs) at these 0-based ranks: find each rank's bin from the
    histogram, then read only that bin's rows."""
    by_bin: dict[int, list[tuple[int, int]]] = defaultdict(list)
    seen = 0
    rank_iter = iter(ranks)
    rank = next(rank_iter, None)
    for duration_bin in sorted(state.bins):
        count = state.bins[duration_bin]
        while rank is not None and rank < seen + count:
            by_bin[duration_bin].append((rank, rank - seen))
            rank = next(rank_iter, None)
        seen += count
    # One round trip: a sub-select per bin, each reading only its bin's rows in the window, in
    # duration order from whichever end of the bin is nearer the wanted ranks (the histogram
    # gives the bin's count in the window), so that PostgreSQL walks the (bin, duration) index
    # and stops there: at most half the bin's rows, and no sort.
    site_clause = "" if site_id is None else " AND site_id = %s"
    parts, params, firsts = [], [], {}
    for index, (duration_bin, wanted) in enumerate(sorted(by_bin.items())):
        first = min(offset for _, offset in wanted)
        last = max(offset for _, offset in wanted)
        from_top = state.bins[duration_bin] - 1 - last
        descending = from_top < first
        firsts[duration_bin] = first
        parts.append(
            f"SELECT {int(duration_bin)} AS bin, fulfillment_us FROM ("  # noqa: S608
            f"SELECT fulfillment_us FROM {DeliveryRecord._meta.db_table} "
            f"WHERE fulfillment_bin = %s AND occurred_at > %s AND occurred_at <= %s{site_clause} "
            f"ORDER BY fulfillment_us{' DESC' if descending else ''} LIMIT %s OFFSET %s"
            f") AS part_{index}"
        )
        params.extend([duration_bin, datetime_param(state.start), datetime_param(state.end)])
        params.extend([] if site_id is None else [site_id])
        params.extend([last - first + 1, from_top if descending else first])
    found: dict[int, list[int]] = defaultdict(list)
    with connection.cursor() as cursor:
        cursor.execute(" UNION ALL ".join(parts), params)
        for duration_bin, duration_us in cursor.fetchall():
            found[duration_bin].append(duration_us)
    values = {}
    for duration_bin, wanted in by_bin.items():
        in_order = sorted(found[duration_bin])
        for rank_value, offset in wanted:
            values[rank_value] = in_order[offset - firsts[duration_bin]]
    return values
