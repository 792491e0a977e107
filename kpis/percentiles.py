"""Exact fulfillment-time percentiles of a window, from its histogram and order statistics."""

from collections import defaultdict
from decimal import Decimal

from django.db import connection

from core.db import datetime_param
from kpis.models import (
    DeliveryRecord,
)
from kpis.windows import PERCENTILES, WindowState


def percentiles_exact(state: WindowState, site_id: int | None) -> dict[str, float | None]:
    """Exact percentiles with linear interpolation between closest ranks (numpy's default)."""
    population = sum(state.bins.values())
    if population == 0:
        return dict.fromkeys(PERCENTILES)
    wanted, ranks = ranks_wanted(population)
    return interpolated(wanted, _order_statistics(state, site_id, ranks))


def ranks_wanted(population: int) -> tuple[dict[str, tuple[int, Decimal]], list[int]]:
    """For each percentile, its lower 0-based rank and the weight of the next one; and every
    rank to read, in order."""
    wanted: dict[str, tuple[int, Decimal]] = {}
    ranks: set[int] = set()
    for key, fraction in PERCENTILES.items():
        position = (population - 1) * fraction
        lower = int(position)
        wanted[key] = (lower, position - lower)
        ranks.add(lower)
        if position != lower:
            ranks.add(lower + 1)
    return wanted, sorted(ranks)


def interpolated(wanted: dict[str, tuple[int, Decimal]], values: dict) -> dict[str, float]:
    """Each percentile (seconds) from the durations (µs) at its ranks."""
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
    site_clause = "" if site_id is None else " AND site_id = %s"
    reading = OrderStatisticsRead(state.bins, ranks, state.start, state.end)
    sql, params = reading.statement(site_clause, [] if site_id is None else [site_id])
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return reading.values(cursor.fetchall())


class OrderStatisticsRead:
    """Reading the durations at some ranks of a window's histogram `bins` (bin -> count) from
    the delivery records matching a filter (a site, a channel, a courier)."""

    def __init__(self, bins: dict, ranks: list[int], start, end):
        self.bins, self.start, self.end = bins, start, end
        self.by_bin: dict[int, list[tuple[int, int]]] = defaultdict(list)
        seen = 0
        rank_iter = iter(ranks)
        rank = next(rank_iter, None)
        for duration_bin in sorted(bins):
            count = bins[duration_bin]
            while rank is not None and rank < seen + count:
                self.by_bin[duration_bin].append((rank, rank - seen))
                rank = next(rank_iter, None)
            seen += count
        self.firsts: dict[int, int] = {}

    def statement(self, clause: str, clause_params: list, tag: int = 0) -> tuple[str, list]:
        """One SELECT of (tag, bin, duration) rows: a sub-select per bin, each reading only
        its bin's rows in the window that match `clause` (` AND ...`), in duration order from
        whichever end of the bin is nearer the wanted ranks (the histogram gives the bin's
        count in the window), so that PostgreSQL walks the (bin, duration) index and stops
        there: at most half the bin's rows, and no sort."""
        parts, params = [], []
        for index, (duration_bin, count, offset, descending) in enumerate(self.slices()):
            parts.append(
                f"SELECT {int(tag)} AS tag, {int(duration_bin)} AS bin, fulfillment_us FROM ("  # noqa: S608
                f"SELECT fulfillment_us FROM {DeliveryRecord._meta.db_table} "
                f"WHERE fulfillment_bin = %s AND occurred_at > %s AND occurred_at <= %s{clause} "
                f"ORDER BY fulfillment_us{' DESC' if descending else ''} LIMIT %s OFFSET %s"
                f") AS part_{int(tag)}_{index}"
            )
            params.extend([duration_bin, datetime_param(self.start), datetime_param(self.end)])
            params.extend(clause_params)
            params.extend([count, offset])
        return " UNION ALL ".join(parts), params

    def slices(self) -> list[tuple[int, int, int, bool]]:
        """(bin, rows to read, offset, from the top?) of each bin holding wanted ranks: from
        whichever end of the bin is nearer them (the histogram gives the bin's count)."""
        slices = []
        for duration_bin, wanted in sorted(self.by_bin.items()):
            first = min(offset for _, offset in wanted)
            last = max(offset for _, offset in wanted)
            from_top = self.bins[duration_bin] - 1 - last
            descending = from_top < first
            self.firsts[duration_bin] = first
            slices.append(
                (duration_bin, last - first + 1, from_top if descending else first, descending)
            )
        return slices

    def values(self, rows) -> dict[int, int]:
        """Rank -> duration (µs), from this read's rows `(tag, bin, duration)`."""
        found: dict[int, list[int]] = defaultdict(list)
        for _tag, duration_bin, duration_us in rows:
            found[duration_bin].append(duration_us)
        values = {}
        for duration_bin, wanted in self.by_bin.items():
            in_order = sorted(found[duration_bin])
            for rank_value, offset in wanted:
                values[rank_value] = in_order[offset - self.firsts[duration_bin]]
        return values
