"""Every KPI of SPEC.md for a scope and window, read from the rollups at a bounded cost.

CONTRACT: `kpis_compute` returns exactly the JSON object of `GET /api/kpis` (keys, units and
nulls as SPEC.md says); the dashboards and alerts read only this.

A window W is the instants (now - W, now], by event time. Whole minutes, hours and days inside
it are read from `KpiBucket` (at most ~200 rows per site); at each end, the raw facts of the
part of the edge minute outside or inside the window are folded in or taken out (`_Head`,
`_edges_add`), so the edges are exact too. Inventory value at
an instant is the site's all-time total minus what happened after it (see docs/kpis.md).
"""

import datetime as dt
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from django.db import connection
from django.db.models import BigIntegerField, Case, DecimalField, F, Q, Sum, Value, When
from django.utils import timezone

from dashboards.models import (
    ALL_SITES,
    BIN_COUNT_FIELDS,
    BINS_PER_ROW,
    STOCK_TROUBLE_SQL,
    DeliveryRecord,
    FulfillmentBin,
    KpiBucket,
    Revaluation,
    SnapshotRecord,
    StockStatus,
    StockTroubleCount,
    UnitCostChange,
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
    money_e4,
    money_from_e4,
    movements_fold,
    sums_new,
)
from ingest.selectors import feeds_freshness_fold, feeds_freshness_statement
from ledger.exceptions import UnknownSite
from ledger.models import Movement, Site, Sku

WINDOWS = {"1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
YEAR_S = 365 * 86400
DEMAND_LOOKBACK = dt.timedelta(days=30)
PERCENTILES = {"fulfillment_p50_s": Decimal("0.5"), "fulfillment_p90_s": Decimal("0.9")}
WORST_STOCKOUTS = 10
MICROSECOND = dt.timedelta(microseconds=1)
HALF_MINUTE = dt.timedelta(seconds=30)


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
    with connection.cursor() as cursor:  # raw SQL: cheaper to build than the ORM's, every read
        cursor.execute(f"SELECT id FROM {Site._meta.db_table} WHERE code = %s", [site])  # noqa: S608
        row = cursor.fetchone()
    if row is None:
        raise UnknownSite([site])
    return row[0]


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


def _ranges_sql(ranges) -> tuple[str, list]:
    """SQL matching the buckets of these (span, first start, end) runs, and its parameters."""
    clauses, params = [], []
    for span, lo, hi in ranges:
        clauses.append("(span_s = %s AND start >= %s AND start < %s)")
        params.extend([span, _adapt(instant(lo)), _adapt(instant(hi))])
    return " OR ".join(clauses) or "1 = 0", params


def _adapt(moment: dt.datetime):
    return connection.ops.adapt_datetimefield_value(moment)


# Which part of the answer a bucket row belongs to: the window, after its end, or the total.
IN_WINDOW, AFTER_END, TOTAL = 0, 1, 2


# A statement is (SQL, parameters), or a callable giving the rows (an ORM query: SQLite).
Statement = tuple[str, list] | Callable[[], list[tuple]]


def _rows_of(statements: list[Statement]) -> list[list[tuple]]:
    """The rows of each of these independent statements.

    On PostgreSQL in one round trip: Django's psycopg cursor binds parameters on the client,
    so the statements go as one simple query and `nextset` walks their results. A KPI read
    used to wait for one round trip per statement, each costing more than its execution.
    """
    options = connection.settings_dict.get("OPTIONS", {})
    if connection.vendor == "postgresql" and not options.get("server_side_binding"):
        sql = ";\n".join(statement[0] for statement in statements)
        params = [value for _, values in statements for value in values]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            results = [cursor.fetchall()]
            while cursor.nextset():
                results.append(cursor.fetchall())
        return results
    results = []
    for statement in statements:
        if callable(statement):
            results.append(statement())
            continue
        with connection.cursor() as cursor:
            cursor.execute(*statement)
            results.append(cursor.fetchall())
    return results


def window_state(
    *, site_id: int | None, start: dt.datetime, end: dt.datetime, per_site: bool = False
) -> WindowState:
    """Sum the facts in (start, end], and the inventory value at `end`; for all sites
    (site_id None) from the all-sites rows, or with `per_site` site by site."""
    state = WindowState(start=start, end=end)
    bucket_rows, edge_rows = _rows_of(_window_statements(site_id, start, end, per_site))
    _window_fold(state, bucket_rows, edge_rows)
    return state


@dataclass(frozen=True)
class _Head:
    """How the minute holding a window's start is read: its first bucket (epoch s) read whole,
    and the raw facts at that edge, between `low` and `high`, that `_edges_add` folds in.

    Whichever side of `start` is shorter: in the minute's first half the minute's bucket is
    read whole and its facts up to `start` are taken out again; in its second half the facts
    after `start` are added to the buckets from the next minute on. A read folds at most half
    a minute of raw facts at this edge, a quarter on average, instead of up to all of it."""

    first_bucket: int
    low: dt.datetime
    high: dt.datetime
    from_bucket: bool

    @classmethod
    def of(cls, start: dt.datetime) -> "_Head":
        minute = minute_of(start)
        if start - instant(minute) < HALF_MINUTE:
            return cls(minute, instant(minute), start, from_bucket=True)  # facts in [low, high]
        return cls(minute + 60, start, instant(minute + 60), from_bucket=False)  # (low, high)


def _window_statements(
    site_id: int | None, start: dt.datetime, end: dt.datetime, per_site: bool = False
) -> list[Statement]:
    """The bucket sums and the raw facts at the ends of (start, end]: the shorter side of
    `start` in its minute (`_Head`), and what the minute holding `end` holds after `end` (see
    `_edges_add`)."""
    head = _Head.of(start)
    last_minute = minute_of(end)  # the minute holding `end`: its bucket is read whole
    in_window, window_params = _ranges_sql(_bucket_ranges(head.first_bucket, last_minute + 60))
    after_end = _adapt(instant(last_minute + 60))
    # All sites: the all-sites rows, a few hundred at most whatever the number of sites.
    site_clause, site_params = "site_id = %s", [ALL_SITES if site_id is None else site_id]
    if per_site and site_id is None:
        site_clause, site_params = "site_id <> %s", [ALL_SITES]
    # Raw SQL because the ORM spends longer building this than PostgreSQL spends running it.
    # Only our column names are interpolated.
    sql = (
        f"SELECT site_id, CASE WHEN span_s = {TOTAL_SPAN} THEN {TOTAL} "  # noqa: S608
        f"WHEN span_s = {SPANS[0]} AND start >= %s THEN {AFTER_END} ELSE {IN_WINDOW} END, "
        + ", ".join(f"SUM({name})" for name in FIELDS)
        + f" FROM {KpiBucket._meta.db_table} WHERE {site_clause} AND ("
        f"{in_window} OR span_s = {TOTAL_SPAN} OR (span_s = {SPANS[0]} AND start >= %s)) "
        "GROUP BY 1, 2"
    )
    buckets = (sql, [after_end, *site_params, *window_params, after_end])
    if connection.vendor == "postgresql":
        return [buckets, _edge_statement(site_id, head, end, last_minute)]
    return [buckets, lambda: _edge_rows_orm(site_id, head, end, last_minute)]


def _window_fold(state: WindowState, bucket_rows, edge_rows) -> None:
    for row_site, part, *sums in bucket_rows:
        # PostgreSQL sums bigints as numeric: back to exact Python ints.
        values = [int(value or 0) for value in sums]
        if part == IN_WINDOW:
            target = state.sums[row_site]
            for index, value in enumerate(values):
                target[index] += value
        elif part == TOTAL:
            state.value_end_e4[row_site] += values[VALUE]
        else:
            state.value_end_e4[row_site] -= values[VALUE]
    _edges_add(state, edge_rows)


COST_CHANGE, DELIVERED, DELIVERED_ACCURATE, REVALUED = (
    "~cost_change",
    "~delivered",
    "~delivered_accurate",
    "~revalued",
)


def _edges_add(state: WindowState, rows) -> None:
    """Fold the raw facts at both ends of the window: movements (with their SKU's cost), the
    cost changes of those SKUs, deliveries and revaluations, shaped alike and glued with
    UNION ALL.

    Head (`_Head`): facts after `start` in its minute are added, or, when that minute's bucket
    was read whole, its facts up to `start` (revaluations included) are taken out. Tail: the
    bucket of the minute holding `end` is in the sums whole, so the facts of that minute after
    `end` (normally none: events dated in the future) are taken out again. Reading the tail
    minute from its bucket rather than from its raw facts keeps a read's cost flat while events
    flow: at 1,000 events/s the minute holding `now` holds up to 60,000 movements, which a
    live dashboard read every few hundred milliseconds. Revaluations happen on whole minutes:
    the only ones at the edges are at the start of a minute whose bucket is read whole.
    """
    start, end = state.start, state.end
    moved, delivered, changes, costs = [], [], defaultdict(list), {}
    for row_site, sku_id, kind, amount, occurred_at, unit_cost in rows:
        if kind == COST_CHANGE:
            changes[sku_id].append((int(occurred_at.timestamp()), amount))
        elif kind in (DELIVERED, DELIVERED_ACCURATE):
            delivered.append((row_site, occurred_at, kind == DELIVERED_ACCURATE, amount, sku_id))
        elif kind == REVALUED:
            # the value change at a minute's start, before the window's (see docstring)
            state.sums[row_site][VALUE] -= amount
        else:
            moved.append((row_site, sku_id, kind, amount, occurred_at))
            costs[sku_id] = money_e4(unit_cost)
    if moved:
        for sku_changes in changes.values():
            sku_changes.sort()
        book = CostBook(costs, dict(changes))
        before, inside, after = sums_new(), sums_new(), sums_new()
        movements_fold(before, [row for row in moved if row[4] <= start], book)
        movements_fold(inside, [row for row in moved if start < row[4] <= end], book)
        movements_fold(after, [row for row in moved if row[4] > end], book)
        _sums_add(state, before, sign=-1)
        _sums_add(state, inside)
        _sums_add(state, after, sign=-1)
        for (row_site, _minute), values in after.items():
            state.value_end_e4[row_site] -= values[VALUE]
    for sign, rows in (
        (-1, [row for row in delivered if row[1] <= start]),
        (1, [row for row in delivered if start < row[1] <= end]),
        (-1, [row for row in delivered if row[1] > end]),
    ):
        edge_deliveries = sums_new()
        bins: defaultdict = defaultdict(int)
        deliveries_fold(edge_deliveries, bins, rows)
        _sums_add(state, edge_deliveries, sign=sign)
        for (_site, _minute, duration_bin), count in bins.items():
            state.bins[duration_bin] += sign * count


def _head_sql(head: _Head) -> str:
    """The condition on `occurred_at` of the head's raw facts (see `_Head`)."""
    if head.from_bucket:
        return "(occurred_at >= %s AND occurred_at <= %s)"
    return "(occurred_at > %s AND occurred_at < %s)"


def _edge_rows_orm(site_id, head: _Head, end, last_minute) -> list[tuple]:
    """The edge rows of `_edges_add` through the ORM (SQLite: its converters give aware
    datetimes and decimals back from a UNION)."""
    if head.from_bucket:
        head_facts = Q(occurred_at__gte=head.low, occurred_at__lte=head.high)
    else:
        head_facts = Q(occurred_at__gt=head.low, occurred_at__lt=head.high)
    tail = Q(occurred_at__gt=end, occurred_at__lt=instant(last_minute + 60))
    scope = Q() if site_id is None else Q(site_id=site_id)
    columns = ("site_id", "sku_id", "kind", "on_hand_delta", "occurred_at", "unit_cost")
    no_cost = Value(Decimal(0), output_field=DecimalField(max_digits=14, decimal_places=4))
    edge_movements = Movement.objects.filter(scope & (head_facts | tail))
    movements = edge_movements.annotate(unit_cost=F("sku__unit_cost")).values_list(*columns)
    cost_changes = (
        UnitCostChange.objects.filter(
            effective_at__gt=head.low, sku_id__in=edge_movements.values("sku_id")
        )
        .annotate(
            site_id=Value(0, output_field=BigIntegerField()),
            kind=Value(COST_CHANGE),
            on_hand_delta=F("new_cost_e4") - F("old_cost_e4"),
            occurred_at=F("effective_at"),
            unit_cost=no_cost,
        )
        .values_list(*columns)
    )
    deliveries = (
        DeliveryRecord.objects.filter(scope & (head_facts | tail))
        .annotate(
            sku_id=F("fulfillment_bin"),
            kind=Case(
                When(accurate=True, then=Value(DELIVERED_ACCURATE)), default=Value(DELIVERED)
            ),
            on_hand_delta=F("shipping_cost_e4"),
            unit_cost=no_cost,
        )
        .values_list(*columns)
    )
    parts = [cost_changes.order_by(), deliveries.order_by()]
    if head.from_bucket:
        revaluations = (
            Revaluation.objects.filter(scope & head_facts)
            .annotate(kind=Value(REVALUED), on_hand_delta=F("amount_e4"), unit_cost=no_cost)
            .values_list(*columns)
        )
        parts.append(revaluations.order_by())
    return list(movements.order_by().union(*parts, all=True).order_by())


def _edge_statement(site_id, head: _Head, end, last_minute) -> tuple[str, list]:
    """The edge rows of `_edges_add` in one hand-written statement (PostgreSQL): the ORM took
    longer to build this union than PostgreSQL takes to run it."""
    site_clause = "" if site_id is None else "site_id = %s AND "
    site_params = [] if site_id is None else [site_id]
    edges = f"({_head_sql(head)} OR (occurred_at > %s AND occurred_at < %s))"
    edge_params = [head.low, head.high, end, instant(last_minute + 60)]
    edge_movements = f"{Movement._meta.db_table} WHERE {site_clause}{edges}"
    sql = (
        # Only our table names and fixed clauses are interpolated; values are parameters.
        "SELECT movement.site_id, movement.sku_id, movement.kind, movement.on_hand_delta, "  # noqa: S608
        "movement.occurred_at, sku.unit_cost FROM (SELECT site_id, sku_id, kind, on_hand_delta, "
        f"occurred_at FROM {edge_movements}) AS movement "
        f"JOIN {Sku._meta.db_table} sku ON sku.id = movement.sku_id "
        "UNION ALL SELECT 0, sku_id, %s, new_cost_e4 - old_cost_e4, effective_at, 0 "
        f"FROM {UnitCostChange._meta.db_table} WHERE effective_at > %s "
        f"AND sku_id IN (SELECT sku_id FROM {edge_movements}) "
        "UNION ALL SELECT site_id, fulfillment_bin, CASE WHEN accurate THEN %s ELSE %s END, "
        f"shipping_cost_e4, occurred_at, 0 FROM {DeliveryRecord._meta.db_table} "
        f"WHERE {site_clause}{edges}"
    )
    params = [
        *site_params,
        *edge_params,
        COST_CHANGE,
        head.low,
        *site_params,
        *edge_params,
        DELIVERED_ACCURATE,
        DELIVERED,
        *site_params,
        *edge_params,
    ]
    if head.from_bucket:
        sql += (
            " UNION ALL SELECT site_id, sku_id, %s, amount_e4, occurred_at, 0 "  # noqa: S608
            f"FROM {Revaluation._meta.db_table} WHERE {site_clause}{_head_sql(head)}"
        )
        params += [REVALUED, *site_params, head.low, head.high]
    return sql, params


def _sums_add(state: WindowState, sums, *, sign: int = 1) -> None:
    for (row_site, _minute), values in sums.items():
        target = state.sums[row_site]
        for index, value in enumerate(values):
            target[index] += sign * value


def _bins_statement(site_id: int | None, start: dt.datetime, end: dt.datetime):
    # Like the window sums: the same head (`_Head`) and the minute holding `end` whole
    # (`_edges_add` takes out what each edge's bucket holds outside the window).
    head = _Head.of(start)
    in_window, params = _ranges_sql(_bucket_ranges(head.first_bucket, minute_of(end) + 60))
    sql = (
        f"SELECT bin_group, {', '.join(f'SUM({name})' for name in BIN_COUNT_FIELDS)} "  # noqa: S608
        f"FROM {FulfillmentBin._meta.db_table} "
        f"WHERE site_id = %s AND ({in_window}) GROUP BY bin_group"
    )
    return sql, [ALL_SITES if site_id is None else site_id, *params]


def _bins_fold(state: WindowState, rows) -> None:
    for group, *counts in rows:
        first = group * BINS_PER_ROW
        for column, count in enumerate(counts):
            if count:
                state.bins[first + column] += int(count)


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
        params.extend([duration_bin, _adapt(state.start), _adapt(state.end)])
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


# Far enough ahead to cover any last order line time: the stockout buckets are read from the
# edge of the demand lookback onwards.
STOCKOUT_BUCKETS_END_S = 253_402_214_400  # 9999-12-31, a day boundary


def _now_statement(site_id: int | None, now: dt.datetime) -> tuple[str, list]:
    """Stockouts, negative stock, below-reorder-point pairs now, and the reconciliation skew
    of the latest snapshot of each site.

    The counts come from the scope's `StockTroubleCount` rows: the totals, and the stockout
    buckets (minutes, hours, days of the last order line) after the minute holding
    `now - 30 days`, at most ~59 + 23 + 31 rows per shard whatever the number of pairs in
    trouble. Only the stockout candidates whose last order line falls in that edge minute,
    after `now - 30 days`, are counted from `StockStatus` (its trouble index is led by that
    time).
    """
    status = StockStatus._meta.db_table
    snapshots = SnapshotRecord._meta.db_table
    site_clause = "" if site_id is None else " AND site_id = %s"
    site_params = [] if site_id is None else [site_id]
    sites_clause = "" if site_id is None else " WHERE site.id = %s"
    demand_since = now - DEMAND_LOOKBACK
    edge_end = minute_of(demand_since) + 60
    buckets, bucket_params = _ranges_sql(_bucket_ranges(edge_end, STOCKOUT_BUCKETS_END_S))
    # Only table names and fixed clauses are interpolated; values are parameters.
    sql = (
        "SELECT counts.*, skew.* FROM (SELECT "  # noqa: S608
        "COALESCE(SUM(stockouts), 0) + ("
        f"SELECT COUNT(*) FROM {status} WHERE {STOCK_TROUBLE_SQL} AND available <= 0 "
        f"AND last_order_line_at > %s AND last_order_line_at < %s{site_clause}) AS stockouts, "
        "COALESCE(SUM(negative_stock), 0) AS negative, "
        "COALESCE(SUM(below_reorder_point), 0) AS below "
        f"FROM {StockTroubleCount._meta.db_table} "
        f"WHERE site_id = %s AND (span_s = {TOTAL_SPAN} OR {buckets})) AS counts CROSS JOIN ("
        f"SELECT SUM(line_count) AS lines, SUM(mismatched_lines) AS mismatched, "
        f"SUM(unit_difference) AS units FROM {snapshots} WHERE id IN ("
        f"SELECT (SELECT latest.id FROM {snapshots} latest WHERE latest.site_id = site.id "
        "ORDER BY latest.occurred_at DESC, latest.id DESC LIMIT 1) "
        f"FROM {Site._meta.db_table} site{sites_clause})) AS skew"
    )
    params = [_adapt(demand_since), _adapt(instant(edge_end)), *site_params]
    params += [ALL_SITES if site_id is None else site_id, *bucket_params, *site_params]
    return sql, params


def _now_fold(rows) -> dict:
    ((stockouts, negative, below, lines, mismatched, units),) = rows
    return {
        "stockouts": int(stockouts),
        "negative_stock": int(negative),
        "below_reorder_point": int(below),
        "reconciliation_skew": _ratio(int(mismatched), int(lines)) if lines else None,
        "reconciliation_skew_units": int(units) if lines else None,
    }


def _ratio(numerator: int, denominator: int) -> float | None:
    return None if denominator == 0 else float(Decimal(numerator) / Decimal(denominator))


def _money(amount_e4: int) -> float:
    return float(money_from_e4(amount_e4))


def _window_bounds(window: str, now: dt.datetime | None) -> tuple[dt.datetime, int]:
    if window not in WINDOWS:
        raise UnknownWindow(window)
    return now or timezone.now(), WINDOWS[window]


def turnover(cogs_e4: int, value_start_e4: int, value_end_e4: int, window_s: int | Decimal):
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
    # Everything but the percentiles' delivery rows (which need the histogram): one round trip
    # on PostgreSQL.
    bucket_rows, edge_rows, bin_rows, now_rows, feed_rows = _rows_of(
        [
            *_window_statements(site_id, start, now),
            _bins_statement(site_id, start, now),
            _now_statement(site_id, now),
            feeds_freshness_statement(now=now),
        ]
    )
    state = WindowState(start=start, end=now)
    _window_fold(state, bucket_rows, edge_rows)
    _bins_fold(state, bin_rows)
    total = state.total
    value_end = sum(state.value_end_e4.values())
    value_start = value_end - total(VALUE)
    rate = turnover(total(COGS), value_start, value_end, window_s)
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
        **_now_fold(now_rows),
        "feeds": feeds_freshness_fold(feed_rows, now=now),
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
    first and last point cover the buckets holding the window's ends. The last bucket's
    turnover is annualised over the part of it that has passed (at least a second); its orders
    per minute are its orders so far over the minutes it has lasted (at least one).
    """
    now, window_s = _window_bounds(window, now)
    site_id = _site_id(site)
    span = TREND_SPANS[window]
    last = int(now.timestamp()) // span * span
    first = int((now - dt.timedelta(seconds=window_s)).timestamp()) // span * span
    start = now - dt.timedelta(seconds=window_s)
    scope = Q(site_id=ALL_SITES if site_id is None else site_id)
    # Every read in one round trip on PostgreSQL (see `_rows_of`): a live dashboard computes
    # this every few hundred milliseconds, and each round trip cost more than its query.
    series_query = (
        KpiBucket.objects.filter(
            scope, span_s=span, start__gte=instant(first), start__lte=instant(last)
        )
        .order_by()
        .values("start")
        .annotate(*(Sum(name) for name in FIELDS))
        .values_list("start", *(f"{name}__sum" for name in FIELDS))
    )
    # The value change after the last bucket (by span) and the all-time total (TOTAL_SPAN).
    value_query = (
        KpiBucket.objects.filter(scope)
        .filter(Q(span_s=span, start__gt=instant(last)) | Q(span_s=TOTAL_SPAN))
        .order_by()
        .values("span_s")
        .annotate(value=Sum("value_change_e4"))
        .values_list("span_s", "value")
    )
    worst_query = (
        StockStatus.objects.filter(available__lte=0, last_order_line_at__gt=now - DEMAND_LOOKBACK)
        .filter(Q() if site_id is None else Q(site_id=site_id))
        .order_by("available", "site_id", "sku_id")
        .values_list("site_id", "sku_id", "available", "reorder_point")[:WORST_STOCKOUTS]
    )
    sku_codes_query = Sku.objects.filter(id__in=worst_query.values("sku_id")).values_list(
        "id", "code"
    )
    site_codes_query = Site.objects.order_by().values_list("id", "code")
    series_rows, value_rows, worst_rows, sku_rows, site_rows, bucket_rows, edge_rows = _rows_of(
        [
            _query_statement(series_query),
            _query_statement(value_query),
            _query_statement(worst_query),
            _query_statement(sku_codes_query),
            _query_statement(site_codes_query),
            *_window_statements(site_id, start, now, per_site=True),
        ]
    )
    series = {_aware(row[0]): [int(value or 0) for value in row[1:]] for row in series_rows}
    values_by_span = {row_span: int(value or 0) for row_span, value in value_rows}
    value_after_bucket = values_by_span.get(TOTAL_SPAN, 0) - values_by_span.get(span, 0)
    no_facts = [0] * len(FIELDS)
    points = {"orders_per_minute": [], "turnover": [], "accuracy": [], "cost_per_shipment": []}
    for start_s in range(last, first - 1, -span):
        moment = instant(start_s)
        row = dict(zip(FIELDS, series.get(moment, no_facts), strict=True))
        value_before_bucket = value_after_bucket - row["value_change_e4"]
        # The bucket holding `now` has lasted only until now: annualised over its full span,
        # its turnover read low for most of every minute, a dip at the live edge of the chart.
        lasted_s = span
        if start_s == last:
            lasted_s = max(Decimal(1), Decimal((now - moment) // MICROSECOND) / 1_000_000)
        rate = turnover(row["cogs_e4"], value_before_bucket, value_after_bucket, lasted_s)
        t = moment.isoformat()
        # The bucket under way: per minute of the time it has lasted (so the 24h chart's last
        # hour reads the live rate, not the hour's orders so far spread over a whole hour);
        # at least a minute of it, so its first seconds do not spike.
        order_minutes = Decimal(span) / 60
        if start_s == last:
            order_minutes = max(Decimal(1), min(order_minutes, lasted_s / 60))
        points["orders_per_minute"].append(
            {"t": t, "value": float(Decimal(row["orders_created"]) / order_minutes)}
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
    state = WindowState(start=start, end=now)
    _window_fold(state, bucket_rows, edge_rows)
    codes = dict(site_rows)
    sku_codes = dict(sku_rows)
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
    worst_stockouts = [
        {"site": codes[s], "sku": sku_codes[k], "available": available, "reorder_point": point}
        for s, k, available, point in worst_rows
    ]
    return {**points, "mismatch_by_site": mismatch_by_site, "worst_stockouts": worst_stockouts}


def _query_statement(queryset) -> Statement:
    """An ORM query as a statement of `_rows_of`: its SQL on PostgreSQL (sent with the others
    in one round trip), else the query itself (SQLite needs its converters)."""
    if connection.vendor == "postgresql":
        sql, params = queryset.query.sql_with_params()
        return sql, list(params)
    return lambda: list(queryset)


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)
