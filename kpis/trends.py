"""The KPI trends of a window: per-bucket series, mismatches by site, worst stockouts."""

import bisect
import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.db import connection
from django.db.models import Q, Sum

from kpis.as_of import worst_stockouts_at
from kpis.models import (
    ALL_SITES,
    KpiBucket,
    StockStatus,
)
from kpis.reads import money_float, ratio, turnover, window_bounds
from kpis.units import (
    COUNTS,
    FIELDS,
    MISMATCH_UNITS,
    MISMATCH_VALUE,
    MISMATCHES,
    TOTAL_SPAN,
    instant,
    money_from_e4,
)
from kpis.windows import (
    BUCKETS_END_S,
    DEMAND_LOOKBACK,
    MICROSECOND,
    WORST_STOCKOUTS,
    Statement,
    WindowState,
    bucket_ranges,
    ranges_sql,
    rows_of,
    window_fold,
    window_statements,
)
from ledger.models import Site, Sku
from ledger.selectors import site_id_of

TREND_SPANS = {"1h": 60, "24h": 3600, "7d": 3600, "30d": 86400}
HOUR_S, DAY_S = 3600, 86400
ONE_DAY = dt.timedelta(days=1)
AFTER = 1  # the value change after the last bucket, in the value statement's rows
# Each bucket's own figures behind a window's totals (the tiles' sparklines): the bucket under
# way holds what it has so far.
BUCKET_TOTALS = {
    "deliveries": lambda row: row["deliveries"],
    "counts": lambda row: row["counts"],
    "stock_mismatch_rate": lambda row: ratio(row["mismatches"], row["counts"]),
    "mismatch_units": lambda row: row["mismatch_units"],
    "mismatch_value": lambda row: money_float(row["mismatch_value_e4"]),
}


def kpi_trends_compute(
    *,
    site: str | None = None,
    window: str = "1h",
    now: dt.datetime | None = None,
    as_of: bool = False,
) -> dict:
    """Time series for the dashboard charts, from the rollups (bounded cost).

    Keys: "orders_per_minute", "turnover", "accuracy", "cost_per_shipment" and those of
    BUCKET_TOTALS: lists of {"t": ISO time, "value": number|None} over the window;
    "mismatch_by_site": list of {"site", "rate", "units", "value"}; "worst_stockouts": list of
    {"site", "sku", "available", "reorder_point"} (most negative available first, at most 10).

    The series use whole buckets (minutes for 1h, hours for 24h and 7d, days for 30d): the
    first and last point cover the buckets holding the window's ends. One site's days are its
    local days (`Site.timezone`); all sites' days are UTC days. The last bucket's
    turnover is annualised over the part of it that has passed (at least a second); its orders
    per minute are its orders so far over the minutes it has lasted (at least one).

    `as_of`: `now` is a past instant (docs/as_of.md): the worst stockouts are those of the
    stock levels at it, not of the levels now.
    """
    now, window_s = window_bounds(window, now)
    site_id = site_id_of(site)
    span = TREND_SPANS[window]
    start = now - dt.timedelta(seconds=window_s)
    zone = _day_zone(site_id) if span == DAY_S else None
    starts, end, read_span = _bucket_starts(span=span, start=start, now=now, zone=zone)
    scope = Q(site_id=ALL_SITES if site_id is None else site_id)
    # Every read in one round trip on PostgreSQL (see `rows_of`): a live dashboard computes
    # this every few hundred milliseconds, and each round trip cost more than its query.
    series_query = (
        KpiBucket.objects.filter(
            scope, span_s=read_span, start__gte=instant(starts[0]), start__lt=instant(end)
        )
        .order_by()
        .values("start")
        .annotate(*(Sum(name) for name in FIELDS))
        .values_list("start", *(f"{name}__sum" for name in FIELDS))
    )
    # The value change after the last bucket (by span) and the all-time total (TOTAL_SPAN).
    # In the largest buckets that fit: a few dozen rows for a `now` 30 days back (as_of).
    after, after_params = ranges_sql(bucket_ranges(end, BUCKETS_END_S))
    value_statement = (
        f"SELECT CASE WHEN span_s = {TOTAL_SPAN} THEN {TOTAL_SPAN} ELSE {AFTER} END, "  # noqa: S608
        f"SUM(value_change_e4) FROM {KpiBucket._meta.db_table} WHERE site_id = %s "
        f"AND (span_s = {TOTAL_SPAN} OR {after}) GROUP BY 1",
        [ALL_SITES if site_id is None else site_id, *after_params],
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
    series_rows, value_rows, worst_rows, sku_rows, site_rows, bucket_rows, edge_rows = rows_of(
        [
            _query_statement(series_query),
            value_statement,
            _query_statement(worst_query),
            _query_statement(sku_codes_query),
            _query_statement(site_codes_query),
            *window_statements(site_id, start, now, per_site=True),
        ]
    )
    series: dict[int, list[int]] = {}
    for row_start, *sums in series_rows:
        # The bucket holding each row: with local days, 23 to 25 hour rows each.
        index = bisect.bisect_right(starts, int(_aware(row_start).timestamp())) - 1
        bucket = series.setdefault(starts[index], [0] * len(FIELDS))
        for position, value in enumerate(sums):
            bucket[position] += int(value or 0)
    values_by_span = {row_span: int(value or 0) for row_span, value in value_rows}
    value_after_bucket = values_by_span.get(TOTAL_SPAN, 0) - values_by_span.get(AFTER, 0)
    no_facts = [0] * len(FIELDS)
    points = {"orders_per_minute": [], "turnover": [], "accuracy": [], "cost_per_shipment": []}
    points |= {key: [] for key in BUCKET_TOTALS}
    last = starts[-1]
    for start_s, end_s in reversed(list(zip(starts, [*starts[1:], end], strict=True))):
        moment = instant(start_s)
        row = dict(zip(FIELDS, series.get(start_s, no_facts), strict=True))
        value_before_bucket = value_after_bucket - row["value_change_e4"]
        # The bucket holding `now` has lasted only until now: annualised over its full span,
        # its turnover read low for most of every minute, a dip at the live edge of the chart.
        lasted_s = end_s - start_s
        if start_s == last:
            lasted_s = max(Decimal(1), Decimal((now - moment) // MICROSECOND) / 1_000_000)
        rate = turnover(row["cogs_e4"], value_before_bucket, value_after_bucket, lasted_s)
        t = moment.isoformat() if zone is None else moment.astimezone(zone).isoformat()
        # The bucket under way: per minute of the time it has lasted (so the 24h chart's last
        # hour reads the live rate, not the hour's orders so far spread over a whole hour);
        # at least a minute of it, so its first seconds do not spike.
        order_minutes = Decimal(end_s - start_s) / 60
        if start_s == last:
            order_minutes = max(Decimal(1), min(order_minutes, lasted_s / 60))
        points["orders_per_minute"].append(
            {"t": t, "value": float(Decimal(row["orders_created"]) / order_minutes)}
        )
        points["turnover"].append({"t": t, "value": None if rate is None else float(rate)})
        points["accuracy"].append(
            {"t": t, "value": ratio(row["accurate_deliveries"], row["deliveries"])}
        )
        points["cost_per_shipment"].append(
            {
                "t": t,
                "value": None
                if not row["deliveries"]
                else float(money_from_e4(row["shipping_cost_e4"]) / row["deliveries"]),
            }
        )
        for key, total in BUCKET_TOTALS.items():
            points[key].append({"t": t, "value": total(row)})
        value_after_bucket = value_before_bucket
    for values in points.values():
        values.reverse()
    state = WindowState(start=start, end=now)
    window_fold(state, bucket_rows, edge_rows)
    codes = dict(site_rows)
    sku_codes = dict(sku_rows)
    mismatch_by_site = [
        {
            "site": codes[row_site],
            "rate": ratio(values[MISMATCHES], values[COUNTS]),
            "units": values[MISMATCH_UNITS],
            "value": money_float(values[MISMATCH_VALUE]),
        }
        for row_site, values in sorted(state.sums.items(), key=lambda item: codes.get(item[0], ""))
        if row_site in codes
    ]
    if as_of:
        worst_rows = worst_stockouts_at(site_id=site_id, at=now, limit=WORST_STOCKOUTS)
        sku_codes = dict(
            Sku.objects.filter(id__in={row[1] for row in worst_rows}).values_list("id", "code")
        )
    worst_stockouts = [
        {"site": codes[s], "sku": sku_codes[k], "available": available, "reorder_point": point}
        for s, k, available, point in worst_rows
    ]
    return {
        **points,
        "mismatch_by_site": mismatch_by_site,
        "worst_stockouts": worst_stockouts,
        # What the points' buckets are: their length, and whose days they are (days only).
        "bucket_s": span,
        "day_zone": None if span != DAY_S else str(zone or "UTC"),
    }


def _day_zone(site_id: int | None) -> ZoneInfo | None:
    """The time zone whose days one site's day buckets follow: the site's own; None (UTC)
    for all sites, for a site in UTC, or for a zone name this Python does not know."""
    if site_id is None:
        return None
    name = Site.objects.filter(id=site_id).values_list("timezone", flat=True).first() or "UTC"
    try:
        zone = ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None
    return None if name in {"UTC", "Etc/UTC"} else zone


def _bucket_starts(
    *, span: int, start: dt.datetime, now: dt.datetime, zone: ZoneInfo | None
) -> tuple[list[int], int, int]:
    """The buckets of the chart covering (start, now]: their starts (epoch s, ascending), the
    end of the last one, and the span of the rollup rows they sum.

    UTC: whole buckets of `span`, one rollup row each. Local days (`zone`): from local
    midnight to local midnight (23 to 25 hours across a daylight saving change), summed from
    hour rows; a zone whose offset is not whole hours has its midnight taken at the hour
    boundary before it (the rollups have no finer rows over a whole month)."""
    if zone is None:
        first, last = int(start.timestamp()) // span * span, int(now.timestamp()) // span * span
        return list(range(first, last + 1, span)), last + span, span
    day, last_day = start.astimezone(zone).date(), now.astimezone(zone).date()
    boundaries = []
    while day <= last_day + ONE_DAY:
        midnight = dt.datetime.combine(day, dt.time(), tzinfo=zone)
        boundaries.append(int(midnight.timestamp()) // HOUR_S * HOUR_S)
        day += ONE_DAY
    return boundaries[:-1], boundaries[-1], HOUR_S


def _query_statement(queryset) -> Statement:
    """An ORM query as a statement of `rows_of`: its SQL on PostgreSQL (sent with the others
    in one round trip), else the query itself (SQLite needs its converters)."""
    if connection.vendor == "postgresql":
        sql, params = queryset.query.sql_with_params()
        return sql, list(params)
    return lambda: list(queryset)


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)
