"""The `breakdown` of `GET /api/kpis?by=channel|courier`: the delivery KPIs of a window and
scope, one entry per channel of the order or per courier of the delivery.

Read like the top-level delivery KPIs (`kpis.reads`): whole buckets from the breakdown
rollups, the raw delivery records at the window's two edges folded in or taken out (the same
`Head` and tail as the window sums), and exact percentiles from each key's histogram and
order statistics (`kpis.percentiles`). Two round trips on PostgreSQL whatever the number of
keys: the sums, histograms and edge records; then the durations at the wanted ranks.
"""

import datetime as dt
from collections import defaultdict
from decimal import Decimal

from django.db import connection
from django.db.models import Q

from kpis.breakdown_rollups import BREAKDOWN_FIELDS
from kpis.models import (
    ALL_SITES,
    BIN_COUNT_FIELDS,
    BINS_PER_ROW,
    BreakdownBin,
    BreakdownBucket,
    BreakdownDimension,
    DeliveryRecord,
)
from kpis.percentiles import OrderStatisticsRead, interpolated, ranks_wanted
from kpis.units import instant, minute_of, money_from_e4
from kpis.windows import PERCENTILES, Head, bucket_ranges, ranges_sql, rows_of

# `by` value -> (dimension of the rollups, column of the delivery records).
BREAKDOWNS = {
    "channel": (BreakdownDimension.CHANNEL.value, "channel"),
    "courier": (BreakdownDimension.COURIER.value, "courier_id"),
}


class UnknownBreakdown(ValueError):
    def __init__(self, by: str):
        super().__init__(f"by must be one of {', '.join(BREAKDOWNS)}; got {by!r}")


class _KeyState:
    """One key's sums and histogram in the window."""

    __slots__ = ("bins", "sums")

    def __init__(self) -> None:
        self.sums = [0] * len(BREAKDOWN_FIELDS)
        self.bins: defaultdict = defaultdict(int)


def breakdown_compute(
    *, by: str, site_id: int | None, start: dt.datetime, end: dt.datetime
) -> list[dict]:
    """The breakdown entries of the deliveries in (start, end] of one site (id) or all sites
    (None), ordered by deliveries descending then key. Raises UnknownBreakdown for a bad `by`."""
    if by not in BREAKDOWNS:
        raise UnknownBreakdown(by)
    dimension, column = BREAKDOWNS[by]
    head = Head.of(start)
    last_minute = minute_of(end)
    ranges, range_params = ranges_sql(bucket_ranges(head.first_bucket, last_minute + 60))
    scope = [dimension, ALL_SITES if site_id is None else site_id, *range_params]
    where = f"WHERE dimension = %s AND site_id = %s AND ({ranges})"
    sums_sql = (
        f"SELECT key, {', '.join(f'SUM({name})' for name in BREAKDOWN_FIELDS)} "  # noqa: S608
        f"FROM {BreakdownBucket._meta.db_table} {where} GROUP BY key"
    )
    bins_sql = (
        f"SELECT key, bin_group, {', '.join(f'SUM({name})' for name in BIN_COUNT_FIELDS)} "  # noqa: S608
        f"FROM {BreakdownBin._meta.db_table} {where} GROUP BY key, bin_group"
    )
    sum_rows, bin_rows, edge_rows = rows_of(
        [(sums_sql, scope), (bins_sql, scope), _edge_statement(column, site_id, head, end)]
    )
    keys: defaultdict[str, _KeyState] = defaultdict(_KeyState)
    for key, *values in sum_rows:
        # PostgreSQL sums bigints as numeric: back to exact Python ints.
        keys[key].sums = [int(value or 0) for value in values]
    for key, group, *counts in bin_rows:
        bins = keys[key].bins
        for offset, count in enumerate(counts):
            if count:
                bins[group * BINS_PER_ROW + offset] += int(count)
    for key, occurred_at, accurate, shipping_cost_e4, duration_bin in edge_rows:
        # The edge buckets were read whole: take out what they hold outside the window, add
        # what the window holds outside them (see `kpis.windows._edges_add`).
        sign = 1 if start < occurred_at <= end else -1
        state = keys[key]
        state.sums[0] += sign
        state.sums[1] += sign if accurate else 0
        state.sums[2] += sign * shipping_cost_e4
        if duration_bin is not None:
            state.bins[duration_bin] += sign
    present = {key: state for key, state in keys.items() if state.sums[0] > 0}
    percentiles = _key_percentiles(present, column, site_id, start, end)
    entries = [
        {
            "key": key,
            "deliveries": deliveries,
            "order_accuracy": float(Decimal(accurate) / Decimal(deliveries)),
            "cost_per_shipment": float(money_from_e4(shipping_e4) / deliveries),
            **percentiles[key],
        }
        for key, (deliveries, accurate, shipping_e4) in (
            (key, state.sums) for key, state in present.items()
        )
    ]
    entries.sort(key=lambda entry: (-entry["deliveries"], entry["key"]))
    return entries


def _edge_statement(column: str, site_id: int | None, head: Head, end: dt.datetime):
    """The delivery records at the window's edges: the head's (`Head`) and those of the
    minute holding `end` after it."""
    if head.from_bucket:
        head_facts = Q(occurred_at__gte=head.low, occurred_at__lte=head.high)
    else:
        head_facts = Q(occurred_at__gt=head.low, occurred_at__lt=head.high)
    tail = Q(occurred_at__gt=end, occurred_at__lt=instant(minute_of(end) + 60))
    scope = Q() if site_id is None else Q(site_id=site_id)
    records = DeliveryRecord.objects.filter(scope & (head_facts | tail)).values_list(
        column, "occurred_at", "accurate", "shipping_cost_e4", "fulfillment_bin"
    )
    if connection.vendor == "postgresql":
        return records.query.sql_with_params()
    return lambda: list(records)  # the ORM gives SQLite's text timestamps back as datetimes


def _key_percentiles(keys: dict, column: str, site_id, start, end) -> dict[str, dict]:
    """Each key's fulfillment percentiles, read in one statement for all keys."""
    result = {key: dict.fromkeys(PERCENTILES) for key in keys}
    reads = {}
    for tag, (key, state) in enumerate(sorted(keys.items())):
        population = sum(state.bins.values())
        if population:
            wanted, ranks = ranks_wanted(population)
            reads[tag] = (key, wanted, OrderStatisticsRead(state.bins, ranks, start, end))
    if not reads:
        return result
    if connection.vendor == "postgresql":
        sql, params = _slices_statement(reads, column, site_id, start, end)
    else:
        site_clause = "" if site_id is None else " AND site_id = %s"
        parts, params = [], []
        for tag, (key, _, reading) in reads.items():
            part, part_params = reading.statement(
                f"{site_clause} AND {column} = %s",
                [*([] if site_id is None else [site_id]), key],
                tag,
            )
            parts.append(part)
            params.extend(part_params)
        sql = " UNION ALL ".join(parts)
    rows_by_tag: defaultdict[int, list] = defaultdict(list)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for row in cursor.fetchall():
            rows_by_tag[row[0]].append(row)
    for tag, (key, wanted, reading) in reads.items():
        result[key] = interpolated(wanted, reading.values(rows_by_tag[tag]))
    return result


def _slices_statement(reads: dict, column: str, site_id, start, end) -> tuple[str, list]:
    """Every key's bin slices in one small statement (PostgreSQL): a list of (tag, bin, key,
    rows, offset, from the top) joined LATERAL to the index walk of each. A UNION of one
    sub-select per slice spent three times longer being planned than run (110 slices: 29 ms
    planning, 11 ms execution, 40 couriers over 30 days)."""
    slices = [
        (tag, duration_bin, key, count, offset, descending)
        for tag, (key, _, reading) in reads.items()
        for duration_bin, count, offset, descending in reading.slices()
    ]
    site_clause = "" if site_id is None else " AND site_id = %s"
    site_params = [] if site_id is None else [site_id]
    walk = (
        f"SELECT fulfillment_us FROM {DeliveryRecord._meta.db_table} "  # noqa: S608
        f"WHERE {column} = slice.key AND fulfillment_bin = slice.bin "
        f"AND occurred_at > %s AND occurred_at <= %s{site_clause}"
    )
    sql = (
        "SELECT slice.tag, slice.bin, found.fulfillment_us FROM unnest("  # noqa: S608
        "%s::int[], %s::int[], %s::text[], %s::bigint[], %s::bigint[], %s::bool[]) "
        "AS slice (tag, bin, key, count, skip, descending) CROSS JOIN LATERAL ("
        f"(SELECT * FROM ({walk} AND NOT slice.descending "
        "ORDER BY fulfillment_us LIMIT slice.count OFFSET slice.skip) AS ascending) UNION ALL "
        f"(SELECT * FROM ({walk} AND slice.descending "
        "ORDER BY fulfillment_us DESC LIMIT slice.count OFFSET slice.skip) AS descending)"
        ") AS found"
    )
    columns = [list(values) for values in zip(*slices, strict=True)]
    params = [*columns, start, end, *site_params, start, end, *site_params]
    return sql, params
