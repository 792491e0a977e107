"""Every KPI of docs/kpis.md for a scope and window, read from the rollups at a bounded cost.

CONTRACT: `kpis_compute` returns exactly the JSON object of `GET /api/kpis` (keys, units and
nulls as docs/kpis.md says); the dashboards and alerts read only this.

A window W is the instants (now - W, now], by event time. Whole minutes, hours and days inside
it are read from `KpiBucket` (at most ~200 rows per site); at each end, the raw facts of the
part of the edge minute outside or inside the window are folded in or taken out (`Head`,
`_edges_add`), so the edges are exact too. Inventory value at
an instant is the site's all-time total minus what happened after it (see docs/kpis.md).
"""

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from django.utils import timezone

from core.db import datetime_param
from kpis.as_of import stock_kpis_at
from kpis.breakdowns import BREAKDOWNS, UnknownBreakdown, breakdown_compute
from kpis.models import (
    ALL_SITES,
    STOCK_TROUBLE_SQL,
    SnapshotRecord,
    StockStatus,
    StockTroubleCount,
)
from kpis.percentiles import percentiles_exact
from kpis.units import (
    ACCURATE,
    COGS,
    COUNTS,
    DELIVERIES,
    MISMATCH_UNITS,
    MISMATCH_VALUE,
    MISMATCHES,
    SHIPPING,
    TOTAL_SPAN,
    VALUE,
    instant,
    minute_of,
    money_from_e4,
)
from kpis.windows import (
    BUCKETS_END_S,
    DEMAND_LOOKBACK,
    WINDOWS,
    YEAR_S,
    UnknownWindow,
    WindowState,
    bins_fold,
    bins_statement,
    bucket_ranges,
    ranges_sql,
    rows_of,
    window_fold,
    window_state,
    window_statements,
)
from ledger.models import Site
from ledger.selectors import site_id_of


@dataclass(frozen=True)
class KpiRider:
    """A figure of a room above the read model that every KPI read carries (ingest's feed
    freshness, `feeds`): its statement rides in the read's one round trip, its fold fills its
    key. Registered by that room (`kpi_rider_register`, from its AppConfig.ready), so the read
    model imports nothing above it."""

    statement: Callable[..., tuple[str, list]]  # (now=) -> (sql, params)
    fold: Callable[..., object]  # (rows, now=) -> the value of its key


KPI_RIDERS: dict[str, KpiRider] = {}


def kpi_rider_register(key: str, *, statement, fold) -> None:
    KPI_RIDERS[key] = KpiRider(statement, fold)


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
    buckets, bucket_params = ranges_sql(bucket_ranges(edge_end, BUCKETS_END_S))
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
    params = [datetime_param(demand_since), datetime_param(instant(edge_end)), *site_params]
    params += [ALL_SITES if site_id is None else site_id, *bucket_params, *site_params]
    return sql, params


def _now_fold(rows) -> dict:
    ((stockouts, negative, below, lines, mismatched, units),) = rows
    return {
        "stockouts": int(stockouts),
        "negative_stock": int(negative),
        "below_reorder_point": int(below),
        "reconciliation_skew": ratio(int(mismatched), int(lines)) if lines else None,
        "reconciliation_skew_units": int(units) if lines else None,
    }


def ratio(numerator: int, denominator: int) -> float | None:
    return None if denominator == 0 else float(Decimal(numerator) / Decimal(denominator))


def money_float(amount_e4: int) -> float:
    return float(money_from_e4(amount_e4))


def window_bounds(window: str, now: dt.datetime | None) -> tuple[dt.datetime, int]:
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
    *,
    site: str | None = None,
    window: str = "1h",
    now: dt.datetime | None = None,
    by: str | None = None,
    as_of: dt.datetime | None = None,
) -> dict:
    """Every KPI of docs/kpis.md for one site (code) or all sites (None) over `window` ending `now`;
    with `by` ("channel" or "courier"), also the delivery KPIs broken down (`breakdown`).

    With `as_of` (a past instant): the answer as it stood then, by event time (docs/as_of.md):
    the window ends at `as_of`, the stock KPIs come from the levels at `as_of`, and the riders
    (feed freshness) are left out.

    Raises UnknownSite, UnknownWindow or UnknownBreakdown (a ValueError) for a bad argument.
    """
    if by is not None and by not in BREAKDOWNS:
        raise UnknownBreakdown(by)
    now, window_s = window_bounds(window, as_of or now)
    site_id = site_id_of(site)
    start = now - dt.timedelta(seconds=window_s)
    # Everything but the percentiles' delivery rows (which need the histogram): one round trip
    # on PostgreSQL.
    riders = [] if as_of is not None else list(KPI_RIDERS.items())
    stock_now = [] if as_of is not None else [_now_statement(site_id, now)]
    (
        bucket_rows,
        edge_rows,
        bin_rows,
        *now_rows,
    ) = rows_of(
        [
            *window_statements(site_id, start, now),
            bins_statement(site_id, start, now),
            *stock_now,
            *(rider.statement(now=now) for _, rider in riders),
        ]
    )
    rider_rows = now_rows[len(stock_now) :]
    stock = _now_fold(now_rows[0]) if stock_now else stock_kpis_at(site_id=site_id, at=now)
    state = WindowState(start=start, end=now)
    window_fold(state, bucket_rows, edge_rows)
    bins_fold(state, bin_rows)
    total = state.total
    value_end = sum(state.value_end_e4.values())
    value_start = value_end - total(VALUE)
    rate = turnover(total(COGS), value_start, value_end, window_s)
    answer = {
        "as_of": now.isoformat(),
        "site": site,
        "window": window,
        "inventory_turnover": None if rate is None else float(rate),
        "order_accuracy": ratio(total(ACCURATE), total(DELIVERIES)),
        "deliveries": total(DELIVERIES),
        "stock_mismatch_rate": ratio(total(MISMATCHES), total(COUNTS)),
        "counts": total(COUNTS),
        "mismatch_units": total(MISMATCH_UNITS),
        "mismatch_value": money_float(total(MISMATCH_VALUE)),
        "cost_per_shipment": (
            None
            if total(DELIVERIES) == 0
            else float(money_from_e4(total(SHIPPING)) / total(DELIVERIES))
        ),
        **percentiles_exact(state, site_id),
        **stock,
        **{
            key: rider.fold(rows, now=now)
            for (key, rider), rows in zip(riders, rider_rows, strict=True)
        },
    }
    if by is not None:
        answer["breakdown"] = breakdown_compute(by=by, site_id=site_id, start=start, end=now)
    return answer


def inventory_value_at(*, site: str | None = None, at: dt.datetime) -> Decimal:
    """Inventory value at standard cost (of the time) at an instant, from the rollups."""
    site_id = site_id_of(site)
    state = window_state(site_id=site_id, start=at - dt.timedelta(minutes=1), end=at)
    return money_from_e4(sum(state.value_end_e4.values()))
