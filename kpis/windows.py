"""The window of a KPI read: which buckets and edge facts it covers, read in one round trip
(`rows_of`) and folded into a `WindowState`.
"""

import datetime as dt
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from django.db import connection
from django.db.models import BigIntegerField, Case, DecimalField, F, Q, Value, When

from core.db import datetime_param
from kpis.buckets import deliveries_fold, movements_fold, sums_new
from kpis.costs import CostBook
from kpis.models import (
    ALL_SITES,
    BIN_COUNT_FIELDS,
    BINS_PER_ROW,
    DeliveryRecord,
    FulfillmentBin,
    KpiBucket,
    Revaluation,
    UnitCostChange,
)
from kpis.units import (
    FIELDS,
    SPANS,
    TOTAL_SPAN,
    VALUE,
    instant,
    minute_of,
    money_e4,
)
from ledger.models import Movement, Sku

WINDOWS = {"1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
YEAR_S = 365 * 86400
DEMAND_LOOKBACK = dt.timedelta(days=30)
PERCENTILES = {"fulfillment_p50_s": Decimal("0.5"), "fulfillment_p90_s": Decimal("0.9")}
WORST_STOCKOUTS = 10
MICROSECOND = dt.timedelta(microseconds=1)
HALF_MINUTE = dt.timedelta(seconds=30)
# Far enough ahead to cover any event time: reads of "everything after t" cover [t, this).
BUCKETS_END_S = 253_402_214_400  # 9999-12-31, a day boundary


class UnknownWindow(ValueError):
    """A window that is not one of WINDOWS (the API, the dashboards and their socket say so)."""

    def __init__(self, window: str):
        self.window = window
        super().__init__(f"unknown window {window!r}; use one of {', '.join(WINDOWS)}")


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


def bucket_ranges(low: int, high: int) -> list[tuple[int, int, int]]:
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


def ranges_sql(ranges) -> tuple[str, list]:
    """SQL matching the buckets of these (span, first start, end) runs, and its parameters."""
    clauses, params = [], []
    for span, lo, hi in ranges:
        clauses.append("(span_s = %s AND start >= %s AND start < %s)")
        params.extend([span, datetime_param(instant(lo)), datetime_param(instant(hi))])
    return " OR ".join(clauses) or "1 = 0", params


# Which part of the answer a bucket row belongs to: the window, after its end, or the total.
IN_WINDOW, AFTER_END, TOTAL = 0, 1, 2


# A statement is (SQL, parameters), or a callable giving the rows (an ORM query: SQLite).
Statement = tuple[str, list] | Callable[[], list[tuple]]


def rows_of(statements: list[Statement]) -> list[list[tuple]]:
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
    bucket_rows, edge_rows = rows_of(window_statements(site_id, start, end, per_site))
    window_fold(state, bucket_rows, edge_rows)
    return state


@dataclass(frozen=True)
class Head:
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
    def of(cls, start: dt.datetime) -> "Head":
        minute = minute_of(start)
        if start - instant(minute) < HALF_MINUTE:
            return cls(minute, instant(minute), start, from_bucket=True)  # facts in [low, high]
        return cls(minute + 60, start, instant(minute + 60), from_bucket=False)  # (low, high)


def window_statements(
    site_id: int | None, start: dt.datetime, end: dt.datetime, per_site: bool = False
) -> list[Statement]:
    """The bucket sums and the raw facts at the ends of (start, end]: the shorter side of
    `start` in its minute (`Head`), and what the minute holding `end` holds after `end` (see
    `_edges_add`)."""
    head = Head.of(start)
    last_minute = minute_of(end)  # the minute holding `end`: its bucket is read whole
    in_window, window_params = ranges_sql(bucket_ranges(head.first_bucket, last_minute + 60))
    after_end = datetime_param(instant(last_minute + 60))
    # What happened after `end` (taken out of the all-time total for the value at `end`), in
    # the largest buckets that fit: a few dozen rows for an end 30 days back (`as_of`), none
    # for an end at now unless events are dated in the future.
    after, after_params = ranges_sql(bucket_ranges(last_minute + 60, BUCKETS_END_S))
    # All sites: the all-sites rows, a few hundred at most whatever the number of sites.
    site_clause, site_params = "site_id = %s", [ALL_SITES if site_id is None else site_id]
    if per_site and site_id is None:
        site_clause, site_params = "site_id <> %s", [ALL_SITES]
    # Raw SQL because the ORM spends longer building this than PostgreSQL spends running it.
    # Only our column names are interpolated.
    sql = (
        f"SELECT site_id, CASE WHEN span_s = {TOTAL_SPAN} THEN {TOTAL} "  # noqa: S608
        f"WHEN start >= %s THEN {AFTER_END} ELSE {IN_WINDOW} END, "
        + ", ".join(f"SUM({name})" for name in FIELDS)
        + f" FROM {KpiBucket._meta.db_table} WHERE {site_clause} AND ("
        f"{in_window} OR span_s = {TOTAL_SPAN} OR {after}) "
        "GROUP BY 1, 2"
    )
    buckets = (sql, [after_end, *site_params, *window_params, *after_params])
    if connection.vendor == "postgresql":
        return [buckets, _edge_statement(site_id, head, end, last_minute)]
    return [buckets, lambda: _edge_rows_orm(site_id, head, end, last_minute)]


def window_fold(state: WindowState, bucket_rows, edge_rows) -> None:
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

    The head (`Head`): facts after `start` in its minute are added, or, when that minute's bucket
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


def _head_sql(head: Head) -> str:
    """The condition on `occurred_at` of the head's raw facts (see `Head`)."""
    if head.from_bucket:
        return "(occurred_at >= %s AND occurred_at <= %s)"
    return "(occurred_at > %s AND occurred_at < %s)"


def _edge_rows_orm(site_id, head: Head, end, last_minute) -> list[tuple]:
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


def _edge_statement(site_id, head: Head, end, last_minute) -> tuple[str, list]:
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


def bins_statement(site_id: int | None, start: dt.datetime, end: dt.datetime):
    # Like the window sums: the same head (`Head`) and the minute holding `end` whole
    # (`_edges_add` takes out what each edge's bucket holds outside the window).
    head = Head.of(start)
    in_window, params = ranges_sql(bucket_ranges(head.first_bucket, minute_of(end) + 60))
    sql = (
        f"SELECT bin_group, {', '.join(f'SUM({name})' for name in BIN_COUNT_FIELDS)} "  # noqa: S608
        f"FROM {FulfillmentBin._meta.db_table} "
        f"WHERE site_id = %s AND ({in_window}) GROUP BY bin_group"
    )
    return sql, [ALL_SITES if site_id is None else site_id, *params]


def bins_fold(state: WindowState, rows) -> None:
    for group, *counts in rows:
        first = group * BINS_PER_ROW
        for column, count in enumerate(counts):
            if count:
                state.bins[first + column] += int(count)
