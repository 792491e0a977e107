"""Every KPI of SPEC.md for a scope and window, read from the rollups at a bounded cost.

CONTRACT: `kpis_compute` returns exactly the JSON object of `GET /api/kpis` (keys, units and
nulls as SPEC.md says); the dashboards and alerts read only this.

A window W is the instants (now - W, now], by event time. Whole minutes, hours and days inside
it are read from `KpiBucket` (at most ~200 rows per site); the partial minute at each end is
folded from the raw facts of those two minutes, so the edges are exact too. Inventory value at
an instant is the site's all-time total minus what happened after it (see docs/kpis.md).
"""

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

from django.db import connection
from django.db.models import OuterRef, Q, Subquery, Sum
from django.utils import timezone

from dashboards.models import (
    ALL_SITES,
    DeliveryRecord,
    FulfillmentBin,
    KpiBucket,
    Revaluation,
    SnapshotRecord,
    StockStatus,
)
from dashboards.rollups import (
    ACCURATE,
    COGS,
    COUNTS,
    DELIVERIES,
    FIELDS,
    MISMATCH_UNITS,
    MISMATCH_VALUE,
    MISMATCHES,
    SHIPPING,
    SPANS,
    TOTAL_SPAN,
    VALUE,
    CostBook,
    deliveries_fold,
    instant,
    minute_of,
    money_from_e4,
    movements_fold,
    sums_new,
)
from inventory_ops.exceptions import UnknownSite
from inventory_ops.models import Movement, Site, Sku

WINDOWS = {"1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
YEAR_S = 365 * 86400
DEMAND_LOOKBACK = dt.timedelta(days=30)
PERCENTILES = {"fulfillment_p50_s": Decimal("0.5"), "fulfillment_p90_s": Decimal("0.9")}
WORST_STOCKOUTS = 10


class UnknownWindow(ValueError):
    def __init__(self, window: str):
        super().__init__(f"unknown window {window!r}: use one of {', '.join(WINDOWS)}")


@dataclass
class WindowState:
    """What a window holds, per site: summed facts, value now and fulfillment histogram."""

    start: dt.datetime
    end: dt.datetime
    sums: dict = field(default_factory=lambda: defaultdict(lambda: [0] * len(FIELDS)))
    value_end_e4: dict = field(default_factory=lambda: defaultdict(int))
    bins: dict = field(default_factory=lambda: defaultdict(int))

    def total(self, index: int) -> int:
        return sum(values[index] for values in self.sums.values())


def _site_id(site: str | None) -> int | None:
    if site is None:
        return None
    site_id = Site.objects.filter(code=site).values_list("id", flat=True).first()
    if site_id is None:
        raise UnknownSite([site])
    return site_id


def _bucket_ranges(low: int, high: int) -> list[tuple[int, int, int]]:
    """Cover [low, high) (whole minutes) with (span, first start, end) runs of buckets,
    using the largest buckets that fit."""
    ranges = []

    def cover(span_index: int, lo: int, hi: int) -> None:
        if lo >= hi:
            return
        if span_index < 0:
            return
        span = SPANS[span_index]
        first = -(-lo // span) * span
        last = hi // span * span
        if span_index > 0 and first >= last:
            cover(span_index - 1, lo, hi)
            return
        cover(span_index - 1, lo, first)
        ranges.append((span, first, last))
        cover(span_index - 1, last, hi)

    cover(len(SPANS) - 1, low, high)
    return [(span, lo, hi) for span, lo, hi in ranges if lo < hi]


def _buckets_q(ranges) -> Q:
    query = Q(pk__in=[])
    for span, lo, hi in ranges:
        query |= Q(span_s=span, start__gte=instant(lo), start__lt=instant(hi))
    return query


def window_state(*, site_id: int | None, start: dt.datetime, end: dt.datetime) -> WindowState:
    """Sum the facts in (start, end] per site, and each site's inventory value at `end`."""
    state = WindowState(start=start, end=end)
    first_whole = minute_of(start) + 60  # the first minute boundary after `start`
    last_minute = minute_of(end)  # the minute holding `end`, read from raw facts
    ranges = _bucket_ranges(first_whole, last_minute)
    in_window = _buckets_q(ranges)
    after_end = Q(span_s=SPANS[0], start__gte=instant(last_minute + 60))
    buckets = KpiBucket.objects.filter(in_window | after_end | Q(span_s=TOTAL_SPAN))
    if site_id is not None:
        buckets = buckets.filter(site_id=site_id)
    aggregates = {f"window_{name}": Sum(name, filter=in_window) for name in FIELDS}
    aggregates["value_total"] = Sum("value_change_e4", filter=Q(span_s=TOTAL_SPAN))
    aggregates["value_after"] = Sum("value_change_e4", filter=after_end)
    for row in buckets.order_by().values("site_id").annotate(**aggregates):
        values = state.sums[row["site_id"]]
        for index, name in enumerate(FIELDS):
            values[index] += row[f"window_{name}"] or 0
        state.value_end_e4[row["site_id"]] += (row["value_total"] or 0) - (row["value_after"] or 0)
    _edges_add(state, site_id, start, end, first_whole, last_minute)
    return state


def _edges_add(state, site_id, start, end, first_whole, last_minute) -> None:
    """Fold the raw facts of the partial minutes at both ends of the window."""
    head = Q(occurred_at__gt=start, occurred_at__lt=instant(first_whole))
    tail = Q(occurred_at__gte=instant(last_minute), occurred_at__lt=instant(last_minute + 60))
    scope = Q() if site_id is None else Q(site_id=site_id)
    rows = list(
        Movement.objects.filter(scope & (head | tail))
        .order_by()
        .values_list("site_id", "sku_id", "kind", "on_hand_delta", "occurred_at")
    )
    if rows:
        book = CostBook.load({row[1] for row in rows}, since=start)
        inside = sums_new()
        after = sums_new()
        movements_fold(inside, [row for row in rows if row[4] <= end], book)
        movements_fold(after, [row for row in rows if row[4] > end], book)
        _sums_add(state, inside)
        for (row_site, _minute), values in after.items():
            state.value_end_e4[row_site] -= values[VALUE]
    # Cost changes take effect on whole minutes: only the tail minute's start can hold one.
    for row_site, amount in (
        Revaluation.objects.filter(scope, occurred_at=instant(last_minute))
        .filter(occurred_at__lte=end)
        .values_list("site_id", "amount_e4")
    ):
        state.sums[row_site][VALUE] += amount
    deliveries = sums_new()
    bins: defaultdict = defaultdict(int)
    deliveries_fold(
        deliveries,
        bins,
        DeliveryRecord.objects.filter(scope & (head | tail))
        .filter(occurred_at__lte=end)
        .values_list("site_id", "occurred_at", "accurate", "shipping_cost_e4", "fulfillment_bin"),
    )
    _sums_add(state, deliveries)
    for (_site, _minute, duration_bin), count in bins.items():
        state.bins[duration_bin] += count


def _sums_add(state: WindowState, sums) -> None:
    for (row_site, _minute), values in sums.items():
        target = state.sums[row_site]
        for index, value in enumerate(values):
            target[index] += value


def _fulfillment_bins_add(state: WindowState, site_id: int | None) -> None:
    first_whole = minute_of(state.start) + 60
    last_minute = minute_of(state.end)
    ranges = _bucket_ranges(first_whole, last_minute)
    rows = (
        FulfillmentBin.objects.filter(
            _buckets_q(ranges), site_id=ALL_SITES if site_id is None else site_id
        )
        .order_by()
        .values("bin")
        .annotate(count=Sum("count"))
    )
    for row in rows:
        state.bins[row["bin"]] += row["count"]


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
    records = DeliveryRecord.objects.filter(occurred_at__gt=state.start, occurred_at__lte=state.end)
    if site_id is not None:
        records = records.filter(site_id=site_id)
    values = {}
    for duration_bin, wanted in by_bin.items():
        first = min(offset for _, offset in wanted)
        last = max(offset for _, offset in wanted)
        found = list(
            records.filter(fulfillment_bin=duration_bin)
            .order_by("fulfillment_us")
            .values_list("fulfillment_us", flat=True)[first : last + 1]
        )
        for rank_value, offset in wanted:
            values[rank_value] = found[offset - first]
    return values


def _now_counts(site_id: int | None, now: dt.datetime) -> tuple[int, int, int]:
    """Stockouts, negative stock and below-reorder-point pairs now: one round trip, each count
    served by its partial index."""
    table = StockStatus._meta.db_table
    site_clause = "" if site_id is None else " AND site_id = %s"
    site_params = [] if site_id is None else [site_id]
    demand_since = connection.ops.adapt_datetimefield_value(now - DEMAND_LOOKBACK)
    sql = (
        f"SELECT (SELECT COUNT(*) FROM {table} WHERE available <= 0 "  # noqa: S608
        f"AND last_order_line_at > %s{site_clause}), "
        f"(SELECT COUNT(*) FROM {table} WHERE on_hand < 0{site_clause}), "
        f"(SELECT COUNT(*) FROM {table} WHERE available < reorder_point "
        f"AND has_level{site_clause})"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [demand_since, *site_params, *site_params, *site_params])
        stockouts, negative, below = cursor.fetchone()
    return stockouts, negative, below


def _reconciliation(site_id: int | None) -> tuple[float | None, int | None]:
    """Share of mismatched lines and unit difference of the latest snapshot of each site."""
    latest = SnapshotRecord.objects.filter(site_id=OuterRef("pk")).order_by("-occurred_at", "-id")
    sites = Site.objects.all() if site_id is None else Site.objects.filter(pk=site_id)
    latest_ids = sites.annotate(latest=Subquery(latest.values("id")[:1])).values("latest")
    totals = SnapshotRecord.objects.filter(id__in=latest_ids).aggregate(
        lines=Sum("line_count"), mismatched=Sum("mismatched_lines"), units=Sum("unit_difference")
    )
    if not totals["lines"]:
        return None, None
    return float(Decimal(totals["mismatched"]) / Decimal(totals["lines"])), totals["units"]


def _ratio(numerator: int, denominator: int) -> float | None:
    return None if denominator == 0 else float(Decimal(numerator) / Decimal(denominator))


def _money(amount_e4: int) -> float:
    return float(money_from_e4(amount_e4))


def _window_bounds(window: str, now: dt.datetime | None) -> tuple[dt.datetime, int]:
    if window not in WINDOWS:
        raise UnknownWindow(window)
    return now or timezone.now(), WINDOWS[window]


def turnover(cogs_e4: int, value_start_e4: int, value_end_e4: int, window_s: int):
    """COGS(W) / ((V_start + V_end) / 2) * (365 days / W); None when the average value is 0."""
    average = Decimal(value_start_e4 + value_end_e4) / 2
    if average == 0:
        return None
    return Decimal(cogs_e4) / average * Decimal(YEAR_S) / Decimal(window_s)


def kpis_compute(
    *, site: str | None = None, window: str = "1h", now: dt.datetime | None = None
) -> dict:
    """Every KPI of SPEC.md for one site (code) or all sites (None) over `window` ending `now`.

    Raises UnknownSite or UnknownWindow (a ValueError) for a bad argument.
    """
    now, window_s = _window_bounds(window, now)
    site_id = _site_id(site)
    start = now - dt.timedelta(seconds=window_s)
    state = window_state(site_id=site_id, start=start, end=now)
    _fulfillment_bins_add(state, site_id)
    total = state.total
    value_end = sum(state.value_end_e4.values())
    value_start = value_end - total(VALUE)
    rate = turnover(total(COGS), value_start, value_end, window_s)
    stockouts, negative, below = _now_counts(site_id, now)
    skew, skew_units = _reconciliation(site_id)
    from ingest.selectors import feeds_freshness

    return {
        "as_of": now.isoformat(),
        "site": site,
        "window": window,
        "inventory_turnover": None if rate is None else float(rate),
        "order_accuracy": _ratio(total(ACCURATE), total(DELIVERIES)),
        "deliveries": total(DELIVERIES),
        "stock_mismatch_rate": _ratio(total(MISMATCHES), total(COUNTS)),
        "counts": total(COUNTS),
        "mismatch_units": total(MISMATCH_UNITS),
        "mismatch_value": _money(total(MISMATCH_VALUE)),
        "cost_per_shipment": (
            None
            if total(DELIVERIES) == 0
            else float(money_from_e4(total(SHIPPING)) / total(DELIVERIES))
        ),
        **_percentiles(state, site_id),
        "stockouts": stockouts,
        "negative_stock": negative,
        "below_reorder_point": below,
        "reconciliation_skew": skew,
        "reconciliation_skew_units": skew_units,
        "feeds": feeds_freshness(now=now),
    }


def inventory_value_at(*, site: str | None = None, at: dt.datetime) -> Decimal:
    """Inventory value at standard cost (of the time) at an instant, from the rollups."""
    site_id = _site_id(site)
    state = window_state(site_id=site_id, start=at - dt.timedelta(minutes=1), end=at)
    return money_from_e4(sum(state.value_end_e4.values()))


TREND_SPANS = {"1h": 60, "24h": 3600, "7d": 3600, "30d": 86400}


def kpi_trends_compute(
    *, site: str | None = None, window: str = "1h", now: dt.datetime | None = None
) -> dict:
    """Time series for the dashboard charts, from the rollups (bounded cost).

    Keys: "orders_per_minute", "turnover", "accuracy", "cost_per_shipment": lists of
    {"t": ISO time, "value": number|None} over the window; "mismatch_by_site": list of
    {"site", "rate", "units", "value"}; "worst_stockouts": list of
    {"site", "sku", "available", "reorder_point"} (most negative available first, at most 10).

    The series use whole buckets (minutes for 1h, hours for 24h and 7d, days for 30d): the
    first and last point cover the buckets holding the window's ends.
    """
    now, window_s = _window_bounds(window, now)
    site_id = _site_id(site)
    span = TREND_SPANS[window]
    last = int(now.timestamp()) // span * span
    first = int((now - dt.timedelta(seconds=window_s)).timestamp()) // span * span
    scope = Q() if site_id is None else Q(site_id=site_id)
    series = {
        row["start"]: row
        for row in KpiBucket.objects.filter(
            scope, span_s=span, start__gte=instant(first), start__lte=instant(last)
        )
        .order_by()
        .values("start")
        .annotate(**{f"sum_{name}": Sum(name) for name in FIELDS})
    }
    after = (
        KpiBucket.objects.filter(scope, span_s=span, start__gt=instant(last)).aggregate(
            value=Sum("value_change_e4")
        )["value"]
        or 0
    )
    total_value = (
        KpiBucket.objects.filter(scope, span_s=TOTAL_SPAN).aggregate(value=Sum("value_change_e4"))[
            "value"
        ]
        or 0
    )
    value_after_bucket = total_value - after
    points = {"orders_per_minute": [], "turnover": [], "accuracy": [], "cost_per_shipment": []}
    for start_s in range(last, first - 1, -span):
        moment = instant(start_s)
        found = series.get(moment) or {}
        row = {name: found.get(f"sum_{name}") or 0 for name in FIELDS}
        value_before_bucket = value_after_bucket - row["value_change_e4"]
        rate = turnover(row["cogs_e4"], value_before_bucket, value_after_bucket, span)
        t = moment.isoformat()
        points["orders_per_minute"].append(
            {"t": t, "value": float(Decimal(row["orders_created"]) * 60 / span)}
        )
        points["turnover"].append({"t": t, "value": None if rate is None else float(rate)})
        points["accuracy"].append(
            {"t": t, "value": _ratio(row["accurate_deliveries"], row["deliveries"])}
        )
        points["cost_per_shipment"].append(
            {
                "t": t,
                "value": None
                if not row["deliveries"]
                else float(money_from_e4(row["shipping_cost_e4"]) / row["deliveries"]),
            }
        )
        value_after_bucket = value_before_bucket
    for values in points.values():
        values.reverse()
    state = window_state(site_id=site_id, start=now - dt.timedelta(seconds=window_s), end=now)
    codes = dict(Site.objects.filter(id__in=list(state.sums)).values_list("id", "code"))
    mismatch_by_site = [
        {
            "site": codes[row_site],
            "rate": _ratio(values[MISMATCHES], values[COUNTS]),
            "units": values[MISMATCH_UNITS],
            "value": _money(values[MISMATCH_VALUE]),
        }
        for row_site, values in sorted(state.sums.items(), key=lambda item: codes.get(item[0], ""))
        if row_site in codes
    ]
    return {
        **points,
        "mismatch_by_site": mismatch_by_site,
        "worst_stockouts": _worst_stockouts(site_id, now),
    }


def _worst_stockouts(site_id: int | None, now: dt.datetime) -> list[dict]:
    rows = list(
        StockStatus.objects.filter(available__lte=0, last_order_line_at__gt=now - DEMAND_LOOKBACK)
        .filter(Q() if site_id is None else Q(site_id=site_id))
        .order_by("available", "site_id", "sku_id")
        .values_list("site_id", "sku_id", "available", "reorder_point")[:WORST_STOCKOUTS]
    )
    sites = dict(Site.objects.filter(id__in={r[0] for r in rows}).values_list("id", "code"))
    skus = dict(Sku.objects.filter(id__in={r[1] for r in rows}).values_list("id", "code"))
    return [
        {"site": sites[s], "sku": skus[k], "available": available, "reorder_point": point}
        for s, k, available, point in rows
    ]
