"""Folding facts into per-(site, minute) sums and adding them to the buckets (`KpiBucket`,
`FulfillmentBin`) with one multi-row upsert, on the writer's rollup shard.
"""

import datetime as dt
import itertools
import operator
from collections import defaultdict
from collections.abc import Iterable, Sequence

from django.db import connection

from core.db import copy_rows, datetime_param, pg_int_array, pg_text_array
from kpis.models import (
    ALL_SITES,
    BIN_COUNT_FIELDS,
    BINS_PER_ROW,
    FulfillmentBin,
    KpiBucket,
    Revaluation,
)
from kpis.units import (
    ACCURATE,
    COGS,
    COGS_KINDS,
    COUNTED,
    COUNTS,
    DELIVERIES,
    FIELDS,
    MISMATCH_UNITS,
    MISMATCH_VALUE,
    MISMATCHES,
    ORDERS,
    ROLLUP_SHARD_LOCK_CLASS,
    ROLLUP_SHARDS,
    SHIPPING,
    SPANS,
    TOTAL_SPAN,
    UPSERT_BATCH,
    VALUE,
    instant,
    minute_of,
)

# --- folding facts into per-(site, minute) sums ----------------------------------------------


def sums_new() -> defaultdict:
    return defaultdict(lambda: [0] * len(FIELDS))


def movements_fold(
    sums, rows, book, revaluations: list | None = None, *, money_only: bool = False
) -> None:
    """Add movements `(site_id, sku_id, kind, on_hand_delta, occurred_at)` to `sums`.

    With `revaluations`, also list the value a cost change made later than the movement adds
    at the change's instant: `(site_id, sku_id, effective epoch s, amount e4)`. `money_only`
    adds only amounts (re-valuing movements already counted).
    """
    changes, current = book.changes, book.current
    for site_id, sku_id, kind, delta, occurred_at in rows:
        if not delta and kind != COUNTED:
            continue  # a reservation or its release: no amount and nothing counted
        moment_s = occurred_at.timestamp()
        if current is not None and sku_id not in changes:
            cost = current[sku_id]  # no later cost change: today's cost, without a call
        else:
            cost = book.cost_at(sku_id, moment_s)
        bucket = sums[(site_id, int(moment_s // 60) * 60)]
        bucket[VALUE] += delta * cost
        if kind in COGS_KINDS:
            bucket[COGS] -= delta * cost
        elif kind == COUNTED:
            if not money_only:
                bucket[COUNTS] += 1
            if delta:
                if not money_only:
                    bucket[MISMATCHES] += 1
                    bucket[MISMATCH_UNITS] += abs(delta)
                bucket[MISMATCH_VALUE] += abs(delta) * cost
        if revaluations is not None and delta and sku_id in changes:
            for effective_s, difference in book.changes_after(sku_id, moment_s):
                revaluations.append((site_id, sku_id, effective_s, delta * difference))


def deliveries_fold(sums, bins, rows) -> None:
    """Add deliveries `(site_id, occurred_at, accurate, shipping_cost_e4, bin, ...)` to the sums
    and the fulfillment histogram `bins[(site_id, minute, bin)]` (bin None: creation unknown).
    Columns after the bin (the breakdowns' keys) are ignored."""
    for site_id, occurred_at, accurate, shipping_cost_e4, duration_bin, *_ in rows:
        minute = minute_of(occurred_at)
        bucket = sums[(site_id, minute)]
        bucket[DELIVERIES] += 1
        bucket[ACCURATE] += 1 if accurate else 0
        bucket[SHIPPING] += shipping_cost_e4
        if duration_bin is not None and bins is not None:
            bins[(site_id, minute, duration_bin)] += 1


def orders_fold(sums, rows) -> None:
    """Add order lines `(site_id, occurred_at, opens_order)` to the orders-created counts."""
    for site_id, occurred_at, opens_order in rows:
        if opens_order:
            sums[(site_id, minute_of(occurred_at))][ORDERS] += 1


def revaluations_fold(sums, revaluations) -> None:
    for site_id, _sku_id, effective_s, amount in revaluations:
        sums[(site_id, effective_s - effective_s % 60)][VALUE] += amount


# --- writing the rollups --------------------------------------------------------------------


def bucket_rows_spread(sums, *, all_sites: bool = True) -> dict[tuple[int, int, int], list[int]]:
    """Spread per-(site, minute) sums over the minute, hour, day and all-time buckets of the
    site and (unless told otherwise) of all sites."""
    rows: dict[tuple[int, int, int], list[int]] = {}
    scopes = (None, ALL_SITES) if all_sites else (None,)
    for (site_id, minute), values in sums.items():
        if not any(values):
            continue
        for scope in scopes:
            row_site = site_id if scope is None else scope
            for key in (
                (row_site, 60, minute),
                (row_site, 3600, minute - minute % 3600),
                (row_site, 86400, minute - minute % 86400),
                (row_site, TOTAL_SPAN, 0),
            ):
                row = rows.get(key)
                # map(add): the rebuild spends much of its time in this loop.
                rows[key] = list(values) if row is None else list(map(operator.add, row, values))
    return rows


def bin_rows_spread(bins) -> dict[tuple[int, int, int, int], list[int]]:
    """Spread per-(site, minute, bin) counts over the histogram rows of the site and of all
    sites, per minute, hour and day: key (site, span, start, bin group), one count per column
    (`BIN_COUNT_FIELDS`)."""
    rows: dict[tuple[int, int, int, int], list[int]] = {}
    for (site_id, minute, duration_bin), count in bins.items():
        group, column = divmod(duration_bin, BINS_PER_ROW)
        for scope in (site_id, ALL_SITES):
            for span in SPANS:
                key = (scope, span, minute - minute % span, group)
                row = rows.get(key)
                if row is None:
                    row = rows[key] = [0] * BINS_PER_ROW
                row[column] += count
    return rows


def upsert_add(model, key_fields: Sequence[str], value_fields: Sequence[str], rows) -> None:
    """INSERT ... ON CONFLICT DO UPDATE adding the values, in key order (a fixed lock order).

    Keys hold epoch seconds for `start`. On PostgreSQL one statement with one array per column:
    its text is the same every call, where a VALUES list of thousands of placeholders cost more
    to build and parse (client side) than to run.
    """
    table = model._meta.db_table
    columns = [*key_fields, *value_fields]
    updates = ", ".join(f"{field} = {table}.{field} + excluded.{field}" for field in value_fields)
    conflict = f"ON CONFLICT ({', '.join(key_fields)}) DO UPDATE SET {updates}"
    items = sorted(rows)
    if connection.vendor == "postgresql":
        # Every value column holds integers; a key column integers or text (a breakdown's key).
        arrays = [
            (pg_text_array if isinstance(column[0], str) else pg_int_array)(column)
            for column in zip(*(key for key, _ in items), strict=True)
        ]
        arrays += [
            pg_int_array(column) for column in zip(*(values for _, values in items), strict=True)
        ]
        types = [model._meta.get_field(name).db_type(connection) for name in columns]
        # `start` travels as epoch seconds and becomes a timestamp in the statement.
        selected = [f"to_timestamp({name})" if name == "start" else name for name in columns]
        unnested = ", ".join(
            "%s::bigint[]" if name == "start" else f"%s::{kind}[]"
            for name, kind in zip(columns, types, strict=True)
        )
        with connection.cursor() as cursor:
            # Only column names we own are interpolated; values are array parameters.
            cursor.execute(
                f"INSERT INTO {table} ({', '.join(columns)}) "  # noqa: S608
                f"SELECT {', '.join(selected)} FROM unnest({unnested}) "
                f"AS u ({', '.join(columns)}) {conflict}",
                arrays,
            )
        return
    row_placeholder = "(" + ", ".join(["%s"] * len(columns)) + ")"
    for start in range(0, len(items), UPSERT_BATCH):
        chunk = items[start : start + UPSERT_BATCH]
        params = []
        for key, values in chunk:
            params.extend(
                datetime_param(instant(part)) if name == "start" else part
                for name, part in zip(key_fields, key, strict=True)
            )
            params.extend(values)
        # Only column names we own and placeholders are interpolated; values are parameters.
        sql = (
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES "  # noqa: S608
            f"{', '.join([row_placeholder] * len(chunk))} {conflict}"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, params)


def writer_shard() -> int:
    """A rollup shard no other open transaction writes to (PostgreSQL), else 0.

    Without shards, every writer of a site would wait on that site's current-minute rows until
    the other's commit: ingest jobs of one site would run one after the other, and jobs that
    also wait on each other's stock level locks would deadlock. Each shard is claimed with a
    transaction-scoped advisory lock (re-entrant, released at commit); if all are taken, shard
    0 is shared and writers merely queue, as without shards.
    """
    if connection.vendor != "postgresql":
        return 0  # SQLite runs one writer at a time anyway
    with connection.cursor() as cursor:
        cursor.execute(
            # No ORDER BY: it would evaluate (and take) every lock before sorting; the series
            # is scanned in order and LIMIT stops at the first lock obtained.
            "SELECT shard FROM generate_series(0, %s) AS shard "
            "WHERE pg_try_advisory_xact_lock(%s, shard) LIMIT 1",
            [ROLLUP_SHARDS - 1, ROLLUP_SHARD_LOCK_CLASS],
        )
        row = cursor.fetchone()
    return 0 if row is None else row[0]


def rollups_add(sums, bins=None) -> None:
    buckets = bucket_rows_spread(sums)
    if not buckets and not bins:
        return
    shard = writer_shard()
    if buckets:
        upsert_add(
            KpiBucket,
            ("site_id", "span_s", "start", "shard"),
            FIELDS,
            [((*key, shard), values) for key, values in buckets.items()],
        )
    if bins:
        upsert_add(
            FulfillmentBin,
            ("site_id", "span_s", "start", "bin_group", "shard"),
            BIN_COUNT_FIELDS,
            [((*key, shard), counts) for key, counts in bin_rows_spread(bins).items()],
        )


def revaluations_insert(revaluations) -> None:
    amounts: dict[tuple[int, int, int], int] = defaultdict(int)
    for site_id, sku_id, effective_s, amount in revaluations:
        amounts[(site_id, sku_id, effective_s)] += amount
    bulk_insert(
        Revaluation,
        ["site_id", "sku_id", "occurred_at", "amount_e4"],
        (
            [site_id, sku_id, instant(effective_s), amount]
            for (site_id, sku_id, effective_s), amount in sorted(amounts.items())
            if amount
        ),
    )


def bulk_insert(model, columns: list[str], rows: Iterable[list]) -> None:
    """Insert many rows: COPY on PostgreSQL, multi-row INSERT elsewhere."""
    table = model._meta.db_table
    if connection.vendor == "postgresql":
        copy_rows(model, columns, rows)
        return
    placeholder = "(" + ", ".join(["%s"] * len(columns)) + ")"
    batch = max(1, 30000 // len(columns))
    iterator = iter(rows)
    while chunk := list(itertools.islice(iterator, batch)):
        params = []
        for row in chunk:
            params.extend(
                datetime_param(value) if isinstance(value, dt.datetime) else value for value in row
            )
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES "  # noqa: S608
                f"{', '.join([placeholder] * len(chunk))}",
                params,
            )
