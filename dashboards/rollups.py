"""KPI rollups, kept by the writers in the same transaction as the facts they come from.

CONTRACT (signatures fixed; see docs/kpis.md for the design):
- `rollups_movements_record(movements=..., levels=..., levels_before=...)` is called (through
  the ledger's hook `ledger.signals.movements_recorded`, `dashboards.receivers`) by
  `ledger.services.movements_record` for every ledger write (feed events, corrections,
  counts), with the ledger rows it wrote and the levels after and before them. From movements
  alone come: COGS (order_dispatched and order_returned: -on_hand_delta * unit_cost), counts
  and mismatches (kind counted: on_hand_before != counted), inventory value change
  (on_hand_delta * unit_cost).
- `rollups_facts_record(...)` is called by the ingest workers, in the batch's transaction, for
  the facts that are not movements: deliveries, order lines (demand), stock snapshots. They are
  stored here (append-only) so that `rebuild_kpis` needs nothing but the ledger and these tables.

Every fact is added to its site's minute, hour and day bucket (`KpiBucket`), by event time, with
one multi-row upsert per call; a late fact simply lands in a past bucket. The same folding
functions serve the writers, `rollups_rebuild` and the exact window edges in `dashboards.kpis`.

Unit costs: a movement is valued at the standard cost in effect at its `occurred_at`, read from
`Sku.unit_cost` and the `UnitCostChange` history (see `unit_cost_change_record`).
"""

import datetime as dt
import functools
import itertools
import operator
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from django.db import connection, transaction
from django.db.models import BooleanField, Q, Sum
from django.db.models.expressions import RawSQL

from core.db import copy_rows, pg_int_array, pg_timestamp_array
from dashboards.models import (
    ALL_SITES,
    BIN_COUNT_FIELDS,
    BINS_PER_ROW,
    DeliveryRecord,
    FulfillmentBin,
    KpiBucket,
    OrderLineRecord,
    Revaluation,
    SnapshotRecord,
    StockStatus,
    StockTroubleCount,
    UnitCostChange,
    in_stock_trouble,
)
from ledger.models import (
    Movement,
    MovementKind,
    SiteReorderPoint,
    Sku,
    StockLevel,
)
from ledger.services import MOVEMENT_COLUMNS

SPANS = (60, 3600, 86400)
TOTAL_SPAN = 0  # the all-time bucket of a site, at the epoch
FIELDS = (
    "cogs_e4",
    "value_change_e4",
    "deliveries",
    "accurate_deliveries",
    "shipping_cost_e4",
    "counts",
    "mismatches",
    "mismatch_units",
    "mismatch_value_e4",
    "orders_created",
)
(
    COGS,
    VALUE,
    DELIVERIES,
    ACCURATE,
    SHIPPING,
    COUNTS,
    MISMATCHES,
    MISMATCH_UNITS,
    MISMATCH_VALUE,
    ORDERS,
) = range(len(FIELDS))
UPSERT_BATCH = 1000
ROLLUP_SHARDS = 8
ROLLUP_SHARD_LOCK_CLASS = 470_417  # advisory lock namespace of the rollup shards
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
COGS_KINDS = frozenset({MovementKind.ORDER_DISPATCHED.value, MovementKind.ORDER_RETURNED.value})
COUNTED = MovementKind.COUNTED.value


@dataclass(frozen=True, slots=True)
class DeliveryFact:
    """One `order.delivered` applied."""

    site_id: int
    occurred_at: dt.datetime
    accurate: bool
    shipping_cost: Decimal
    order_created_at: dt.datetime | None  # None when the order's creation is not known


@dataclass(frozen=True, slots=True)
class OrderLineFact:
    """One line of an `order.created` applied: demand for a (site, SKU).

    `order_id` (optional) lets the orders-per-minute chart count orders rather than lines.
    """

    site_id: int
    sku_id: int
    occurred_at: dt.datetime
    qty: int
    order_id: str = ""


@dataclass(frozen=True, slots=True)
class SnapshotFact:
    """One `stock.snapshot` applied: an external system's on-hand view of a site."""

    site_id: int
    occurred_at: dt.datetime
    lines: dict[int, int]  # sku_id -> qty
    # sku_id -> on_hand to compare with (the writer knows it); SKUs left out: the ledger's now.
    on_hand: dict[int, int] | None = None


# --- units ----------------------------------------------------------------------------------


def money_e4(amount: Decimal) -> int:
    """Money as an integer of 1/10,000 (standard costs have 4 decimal places)."""
    return int((Decimal(amount) * 10000).to_integral_value(ROUND_HALF_EVEN))


def money_from_e4(amount_e4: int) -> Decimal:
    return Decimal(amount_e4).scaleb(-4)


def minute_of(moment: dt.datetime) -> int:
    """Epoch second at which the minute holding `moment` starts."""
    return int(moment.timestamp() // 60) * 60


@functools.lru_cache(maxsize=65536)
def instant(epoch_s: int) -> dt.datetime:
    return EPOCH + dt.timedelta(seconds=epoch_s)


FULFILLMENT_BIN_BITS = 5  # 32 bins per doubling of the duration


def fulfillment_bin(duration_us: int) -> int:
    """A duration's histogram bin: 32 bins per doubling, in integer arithmetic so that bins are
    exactly monotonic (a larger duration never lands in a lower bin).

    Finer bins mean fewer delivery rows to read in the bin holding a percentile, but more
    histogram counts per bucket (16 to a `FulfillmentBin` row): 32 keeps the rows read to a few
    hundred and the delivery rows to a few thousand at 200,000 orders a month.
    """
    if duration_us < 0:
        return -1
    bits = duration_us.bit_length()
    mantissa = FULFILLMENT_BIN_BITS + 1
    if bits <= mantissa:
        return duration_us
    return (bits << FULFILLMENT_BIN_BITS) | (
        (duration_us >> (bits - mantissa)) & ((1 << FULFILLMENT_BIN_BITS) - 1)
    )


# --- standard cost in effect at an instant --------------------------------------------------


class CostBook:
    """Standard cost (e4) of SKUs at any instant: today's cost minus the later changes."""

    def __init__(self, current: dict[int, int], changes: dict[int, list[tuple[int, int]]]):
        self.current = current
        self.changes = changes  # sku_id -> [(effective epoch s, new - old)]

    def cost_at(self, sku_id: int, moment_s: float) -> int:
        cost = self.current[sku_id]
        for effective_s, difference in self.changes.get(sku_id, ()):
            if effective_s > moment_s:
                cost -= difference
        return cost

    def changes_after(self, sku_id: int, moment_s: float) -> list[tuple[int, int]]:
        return [change for change in self.changes.get(sku_id, ()) if change[0] > moment_s]

    @classmethod
    def load(
        cls,
        sku_ids: Iterable[int] | None = None,
        *,
        since: dt.datetime | None = None,
        lock_unsafe: bool = False,
    ) -> "CostBook":
        """Load costs of `sku_ids` (all when None) and their changes effective after `since`.

        `lock_unsafe`: take FOR SHARE on the SKU rows (PostgreSQL), so that a concurrent cost
        change waits for this writer or this writer for it (see docs/kpis.md). Caller is inside
        the writing transaction.
        """
        ids = None if sku_ids is None else sorted(set(sku_ids))
        if lock_unsafe and connection.vendor == "postgresql" and ids:
            with connection.cursor() as cursor:
                # One array parameter: a statement of a fixed text (no placeholder per SKU).
                cursor.execute(
                    f"SELECT id, unit_cost FROM {Sku._meta.db_table} "  # noqa: S608
                    "WHERE id = ANY(%s::bigint[]) ORDER BY id FOR SHARE",
                    [pg_int_array(ids)],
                )
                current = {sku_id: money_e4(cost) for sku_id, cost in cursor}
        else:
            skus = Sku.objects.all() if ids is None else Sku.objects.filter(id__in=ids)
            current = {
                sku_id: money_e4(cost) for sku_id, cost in skus.values_list("id", "unit_cost")
            }
        return cls(current, cost_changes_load(ids, since=since))


def cost_changes_load(
    sku_ids: Iterable[int] | None, *, since: dt.datetime | None = None
) -> dict[int, list[tuple[int, int]]]:
    """Cost changes of these SKUs (all when None) effective after `since`, oldest first."""
    changes_query = UnitCostChange.objects.all()
    if sku_ids is not None and connection.vendor == "postgresql":
        # One array parameter rather than a placeholder per SKU (a batch names hundreds).
        changes_query = changes_query.filter(
            RawSQL("sku_id = ANY(%s::bigint[])", [list(sku_ids)], output_field=BooleanField())
        )
    elif sku_ids is not None:
        changes_query = changes_query.filter(sku_id__in=list(sku_ids))
    if since is not None:
        changes_query = changes_query.filter(effective_at__gt=since)
    changes: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for sku_id, effective_at, old, new in changes_query.order_by("effective_at", "id").values_list(
        "sku_id", "effective_at", "old_cost_e4", "new_cost_e4"
    ):
        changes[sku_id].append((int(effective_at.timestamp()), new - old))
    return dict(changes)


class FlatCost:
    """A cost book that values everything at one difference (re-valuing after a change)."""

    changes: dict = {}
    current = None  # no per-SKU costs: `movements_fold` asks `cost_at`

    def __init__(self, difference: int):
        self.difference = difference

    def cost_at(self, sku_id: int, moment_s: float) -> int:
        return self.difference

    def changes_after(self, sku_id: int, moment_s: float) -> list:
        return []


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
    """Add deliveries `(site_id, occurred_at, accurate, shipping_cost_e4, bin)` to the sums and
    the fulfillment histogram `bins[(site_id, minute, bin)]` (bin None: creation unknown)."""
    for site_id, occurred_at, accurate, shipping_cost_e4, duration_bin in rows:
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


def _bucket_rows(sums, *, all_sites: bool = True) -> dict[tuple[int, int, int], list[int]]:
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


def _bin_rows(bins) -> dict[tuple[int, int, int, int], list[int]]:
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


def _adapt(moment: dt.datetime):
    return connection.ops.adapt_datetimefield_value(moment)


def _upsert_add(model, key_fields: Sequence[str], value_fields: Sequence[str], rows) -> None:
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
        # Every key and value column holds integers.
        arrays = [pg_int_array(column) for column in zip(*(key for key, _ in items), strict=True)]
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
                _adapt(instant(part)) if name == "start" else part
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


def _rollups_add(sums, bins=None) -> None:
    buckets = _bucket_rows(sums)
    if not buckets and not bins:
        return
    shard = writer_shard()
    if buckets:
        _upsert_add(
            KpiBucket,
            ("site_id", "span_s", "start", "shard"),
            FIELDS,
            [((*key, shard), values) for key, values in buckets.items()],
        )
    if bins:
        _upsert_add(
            FulfillmentBin,
            ("site_id", "span_s", "start", "bin_group", "shard"),
            BIN_COUNT_FIELDS,
            [((*key, shard), counts) for key, counts in _bin_rows(bins).items()],
        )


def _revaluations_insert(revaluations) -> None:
    amounts: dict[tuple[int, int, int], int] = defaultdict(int)
    for site_id, sku_id, effective_s, amount in revaluations:
        amounts[(site_id, sku_id, effective_s)] += amount
    _bulk_insert(
        Revaluation,
        ["site_id", "sku_id", "occurred_at", "amount_e4"],
        (
            [site_id, sku_id, instant(effective_s), amount]
            for (site_id, sku_id, effective_s), amount in sorted(amounts.items())
            if amount
        ),
    )


def _reorder_points(pairs: set[tuple[int, int]]) -> dict[tuple[int, int], int | None]:
    """Effective reorder point of each pair: the site's own, else the SKU's."""
    if connection.vendor == "postgresql":
        # One statement with array parameters: a feed group asks for thousands of pairs.
        items = sorted(pairs)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT u.site_id, u.sku_id, CASE WHEN own.id IS NULL "  # noqa: S608
                "THEN sku.reorder_point ELSE own.reorder_point END "
                "FROM unnest(%s::bigint[], %s::bigint[]) AS u (site_id, sku_id) "
                f"LEFT JOIN {Sku._meta.db_table} sku ON sku.id = u.sku_id "
                f"LEFT JOIN {SiteReorderPoint._meta.db_table} own "
                "ON own.site_id = u.site_id AND own.sku_id = u.sku_id",
                [
                    pg_int_array(site_id for site_id, _ in items),
                    pg_int_array(sku_id for _, sku_id in items),
                ],
            )
            return {(site_id, sku_id): point for site_id, sku_id, point in cursor}
    sku_ids = {sku_id for _, sku_id in pairs}
    site_ids = {site_id for site_id, _ in pairs}
    defaults = dict(Sku.objects.filter(id__in=sku_ids).values_list("id", "reorder_point"))
    overrides = {
        (site_id, sku_id): point
        for site_id, sku_id, point in SiteReorderPoint.objects.filter(
            site_id__in=site_ids, sku_id__in=sku_ids
        ).values_list("site_id", "sku_id", "reorder_point")
    }
    return {pair: overrides.get(pair, defaults.get(pair[1])) for pair in pairs}


# A pair's `StockStatus` state, as the trouble counters see it.
STATUS_STATE_COLUMNS = ("has_level", "on_hand", "available", "reorder_point", "last_order_line_at")
STATE_LAST_ORDER_LINE = STATUS_STATE_COLUMNS.index("last_order_line_at")
STATE_REORDER_POINT = STATUS_STATE_COLUMNS.index("reorder_point")
TROUBLE_COUNT_FIELDS = ("negative_stock", "below_reorder_point", "stockouts")
NEGATIVE, BELOW, STOCKOUTS = range(len(TROUBLE_COUNT_FIELDS))
# What a pair counts as: (negative, below its reorder point, last order line time if it is a
# stockout candidate, else None). A pair without a row counts as nothing.
Trouble = tuple[bool, bool, dt.datetime | None]
NO_TROUBLE: Trouble = (False, False, None)


def _trouble_of_state(state: tuple) -> Trouble:
    """What a `StockStatus` state (`STATUS_STATE_COLUMNS`) counts as. `_trouble_sql` says the
    same in SQL."""
    has_level, on_hand, available, reorder_point, last_order_line_at = state
    return (
        on_hand < 0,
        bool(has_level and reorder_point is not None and available < reorder_point),
        last_order_line_at if available <= 0 else None,
    )


def _trouble_sql(row: str) -> str:
    """What a row counts as (`_trouble_of_state`), in SQL: the values of (was_negative,
    was_below, was_stockout_at)."""
    return (
        f"{row}.on_hand < 0, ({row}.has_level AND {row}.reorder_point IS NOT NULL "
        f"AND {row}.available < {row}.reorder_point), "
        f"CASE WHEN {row}.available <= 0 THEN {row}.last_order_line_at END"
    )


def _was_set(table: str) -> str:
    """SET clauses keeping, in the changed row, what its old state counted as (a SET's
    right-hand side reads the old row): the update then returns old and new exactly, under the
    row lock it holds, with no read of our own. An inserted row keeps them NULL."""
    return f"(was_negative, was_below, was_stockout_at) = ({_trouble_sql(table)})"


def _status_write(cursor, sql: str, params: list) -> None:
    """Run a `StockStatus` upsert or update that sets `_was_set`, and count the changes of
    the rows whose trouble changed (only those come back)."""
    cursor.execute(
        f"WITH changed AS ({sql} RETURNING site_id, sku_id, "  # noqa: S608
        f"{', '.join(STATUS_STATE_COLUMNS)}, was_negative, was_below, was_stockout_at) "
        "SELECT * FROM changed WHERE (COALESCE(was_negative, false), "
        f"COALESCE(was_below, false), was_stockout_at) IS DISTINCT FROM ("
        f"{_trouble_sql('changed')})",
        params,
    )
    _trouble_counts_add(_trouble_changes(cursor.fetchall()))


def _trouble_changes(rows) -> list[tuple[int, Trouble, Trouble]]:
    """(site, old, new) of the rows `_status_write` returns."""
    changes = []
    for site_id, _sku_id, *rest in rows:
        state, (was_negative, was_below, was_stockout_at) = rest[:5], rest[5:]
        old = NO_TROUBLE if was_negative is None else (was_negative, was_below, was_stockout_at)
        changes.append((site_id, old, _trouble_of_state(state)))
    return changes


def _status_states_read(pairs: Sequence[tuple[int, int]]) -> dict[tuple[int, int], tuple]:
    """The `StockStatus` state of these pairs (SQLite: one writer at a time, so what we read
    is what we change; PostgreSQL writers take the old state from their own update)."""
    if not pairs:
        return {}
    wanted = set(pairs)
    rows = StockStatus.objects.filter(
        site_id__in={site_id for site_id, _ in pairs}, sku_id__in={sku for _, sku in pairs}
    ).values_list("site_id", "sku_id", *STATUS_STATE_COLUMNS)
    return {
        (site_id, sku_id): tuple(state)
        for site_id, sku_id, *state in rows
        if (site_id, sku_id) in wanted
    }


def _state_changes(before: dict, after: dict) -> list[tuple[int, Trouble, Trouble]]:
    """(site, old, new) of these pairs' states (pairs missing from `before` had no row)."""
    return [
        (
            pair[0],
            _trouble_of_state(before[pair]) if pair in before else NO_TROUBLE,
            _trouble_of_state(state),
        )
        for pair, state in after.items()
    ]


def _trouble_add(counts, site_id: int, trouble: Trouble, sign: int) -> None:
    """Add (sign 1) or take out (sign -1) what a pair counts as in the site's and the all-sites
    trouble counters: `counts[(site, span, start s)]` (see `StockTroubleCount`)."""
    negative, below, stockout_at = trouble
    stockout_minute = None if stockout_at is None else minute_of(stockout_at)
    for scope in (site_id, ALL_SITES):
        if negative or below:
            total = counts[(scope, TOTAL_SPAN, 0)]
            total[NEGATIVE] += sign if negative else 0
            total[BELOW] += sign if below else 0
        if stockout_minute is not None:
            for span in SPANS:
                counts[(scope, span, stockout_minute - stockout_minute % span)][STOCKOUTS] += sign


def _trouble_counts_add(changes: Iterable[tuple[int, Trouble, Trouble]]) -> None:
    """Add new minus old of these changes to the trouble counters, in this writer's shard: an
    upsert of deltas, so concurrent writers neither wait on nor overwrite each other."""
    counts: defaultdict = defaultdict(lambda: [0] * len(TROUBLE_COUNT_FIELDS))
    for site_id, old, new in changes:
        if old != new:
            _trouble_add(counts, site_id, old, -1)
            _trouble_add(counts, site_id, new, 1)
    rows = [(key, values) for key, values in counts.items() if any(values)]
    if not rows:
        return
    shard = writer_shard()
    _upsert_add(
        StockTroubleCount,
        ("site_id", "span_s", "start", "shard"),
        TROUBLE_COUNT_FIELDS,
        [((*key, shard), values) for key, values in rows],
    )


_STATUS_LEVEL_CONFLICT = (
    "ON CONFLICT (site_id, sku_id) DO UPDATE SET has_level = excluded.has_level, "
    "on_hand = excluded.on_hand, available = excluded.available, "
    "reorder_point = excluded.reorder_point"
)


def _stock_status_upsert(levels: dict[tuple[int, int], tuple[int, int]]) -> None:
    """Set the copied state of these levels: (site, sku) -> (on_hand, reserved)."""
    table = StockStatus._meta.db_table
    items = sorted(levels.items())  # a fixed lock order
    if connection.vendor == "postgresql":
        # One statement of a fixed text, the reorder points joined in (no lookups of our own).
        # A row whose state is unchanged is left alone: no new row version, no index writes,
        # and it is not returned (nothing to count).
        columns = [
            pg_int_array(site_id for (site_id, _), _ in items),
            pg_int_array(sku_id for (_, sku_id), _ in items),
            pg_int_array(on_hand for _, (on_hand, _) in items),
            pg_int_array(on_hand - reserved for _, (on_hand, reserved) in items),
        ]
        with connection.cursor() as cursor:
            _status_write(
                cursor,
                f"INSERT INTO {table} (site_id, sku_id, has_level, on_hand, available, "  # noqa: S608
                "reorder_point) "
                "SELECT u.site_id, u.sku_id, true, u.on_hand, u.available, "
                "CASE WHEN own.id IS NULL THEN sku.reorder_point ELSE own.reorder_point END "
                "FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[]) "
                "WITH ORDINALITY AS u (site_id, sku_id, on_hand, available, position) "
                f"LEFT JOIN {Sku._meta.db_table} sku ON sku.id = u.sku_id "
                f"LEFT JOIN {SiteReorderPoint._meta.db_table} own "
                "ON own.site_id = u.site_id AND own.sku_id = u.sku_id "
                f"ORDER BY u.position {_STATUS_LEVEL_CONFLICT}, {_was_set(table)} "
                f"WHERE ({table}.has_level, {table}.on_hand, {table}.available, "
                f"{table}.reorder_point) IS DISTINCT FROM (excluded.has_level, "
                "excluded.on_hand, excluded.available, excluded.reorder_point)",
                columns,
            )
        return
    before = _status_states_read([pair for pair, _ in items])
    points = _reorder_points(set(levels))
    for start in range(0, len(items), UPSERT_BATCH):
        chunk = items[start : start + UPSERT_BATCH]
        params = []
        for (site_id, sku_id), (on_hand, reserved) in chunk:
            params.extend(
                [site_id, sku_id, True, on_hand, on_hand - reserved, points[(site_id, sku_id)]]
            )
        sql = (
            f"INSERT INTO {table} (site_id, sku_id, has_level, on_hand, available, "  # noqa: S608
            f"reorder_point) VALUES {', '.join(['(%s, %s, %s, %s, %s, %s)'] * len(chunk))} "
            f"{_STATUS_LEVEL_CONFLICT}"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
    after = {}
    for pair, (on_hand, reserved) in items:
        last_order_line_at = before[pair][STATE_LAST_ORDER_LINE] if pair in before else None
        after[pair] = (True, on_hand, on_hand - reserved, points[pair], last_order_line_at)
    _trouble_counts_add(_state_changes(before, after))


def _stock_status_demand(latest: dict[tuple[int, int], dt.datetime]) -> None:
    """Raise each pair's last order line time (creating a demand-only row if needed)."""
    table = StockStatus._meta.db_table
    items = sorted(latest.items())  # a fixed lock order
    # A row already holding a later time is left alone.
    conflict = (
        "ON CONFLICT (site_id, sku_id) DO UPDATE SET "
        "last_order_line_at = excluded.last_order_line_at"
    )
    newer = (
        f"WHERE {table}.last_order_line_at IS NULL "
        f"OR {table}.last_order_line_at < excluded.last_order_line_at"
    )
    if connection.vendor == "postgresql":
        columns = [
            pg_int_array(site_id for (site_id, _), _ in items),
            pg_int_array(sku_id for (_, sku_id), _ in items),
            pg_timestamp_array(moment for _, moment in items),
        ]
        with connection.cursor() as cursor:
            _status_write(
                cursor,
                f"INSERT INTO {table} (site_id, sku_id, has_level, on_hand, available, "  # noqa: S608
                "last_order_line_at) SELECT site_id, sku_id, false, 0, 0, moment "
                "FROM unnest(%s::bigint[], %s::bigint[], %s::timestamptz[]) "
                f"AS u (site_id, sku_id, moment) {conflict}, {_was_set(table)} {newer}",
                columns,
            )
        return
    before = _status_states_read([pair for pair, _ in items])
    after = {}
    for pair, moment in items:
        state = before.get(pair, (False, 0, 0, None, None))
        if state[STATE_LAST_ORDER_LINE] is None or state[STATE_LAST_ORDER_LINE] < moment:
            after[pair] = (*state[:STATE_LAST_ORDER_LINE], moment)
    for start in range(0, len(items), UPSERT_BATCH):
        chunk = items[start : start + UPSERT_BATCH]
        params = []
        for (site_id, sku_id), moment in chunk:
            params.extend([site_id, sku_id, False, 0, 0, _adapt(moment)])
        sql = (
            f"INSERT INTO {table} (site_id, sku_id, has_level, on_hand, available, "  # noqa: S608
            f"last_order_line_at) VALUES "
            f"{', '.join(['(%s, %s, %s, %s, %s, %s)'] * len(chunk))} {conflict} {newer}"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
    _trouble_counts_add(_state_changes(before, after))


# --- the hooks ------------------------------------------------------------------------------


# Where the fold finds its fields in a ledger row (`MOVEMENT_COLUMNS`).
_FOLDED_COLUMNS = operator.itemgetter(
    *(
        MOVEMENT_COLUMNS.index(name)
        for name in ("site_id", "sku_id", "kind", "on_hand_delta", "occurred_at")
    )
)
_SKU_COLUMN = MOVEMENT_COLUMNS.index("sku_id")
_OCCURRED_AT_COLUMN = MOVEMENT_COLUMNS.index("occurred_at")


def rollups_movements_record(
    *,
    movements: Sequence[tuple],
    levels: dict[tuple[int, int], tuple[int, int]],
    levels_before: dict[tuple[int, int], tuple[int, int]],
) -> None:
    """Fold ledger movements into the rollups and copy the levels they left.

    `movements`: the rows written to the ledger (`ledger.services.MOVEMENT_COLUMNS`);
    `levels` and `levels_before`: (site_id, sku_id) -> (on_hand, reserved) of every level they
    moved, as it now stands and as it stood before them. Caller is inside the writing
    transaction and holds the row locks of those levels.
    """
    if not movements:
        return
    book = CostBook.load(
        set(map(operator.itemgetter(_SKU_COLUMN), movements)),
        since=min(map(operator.itemgetter(_OCCURRED_AT_COLUMN), movements)),
        lock_unsafe=True,
    )
    sums = sums_new()
    revaluations: list = []
    movements_fold(sums, map(_FOLDED_COLUMNS, movements), book, revaluations)
    revaluations_fold(sums, revaluations)
    _rollups_add(sums)
    _revaluations_insert(revaluations)
    _stock_status_upsert(_levels_in_or_out_of_trouble(levels, levels_before))


def _levels_in_or_out_of_trouble(
    levels: dict[tuple[int, int], tuple[int, int]],
    levels_before: dict[tuple[int, int], tuple[int, int]],
) -> dict[tuple[int, int], tuple[int, int]]:
    """The levels whose stock status row is written: those in trouble before or after.

    A pair out of trouble before and after is left alone: the "now" KPIs read only the pairs
    in trouble (`STOCK_TROUBLE`, through its partial index), and rewriting every level a group
    moved was most of the stock status cost (a new row version and index entries each: the
    trouble index names these columns, so the update is never HOT). A row out of trouble may
    therefore hold stale values; a row in trouble, or entering or leaving it, is exact. A level
    seen for the first time starts at 0, in trouble, so it always gets its row.

    Precondition: `CostBook.load(..., lock_unsafe=True)` took FOR SHARE on the SKU rows, so no
    change of reorder point (`stock_status_reorder_points_refresh` takes the SKU row) commits
    between reading the points here and this transaction's commit.
    """

    def in_trouble_before_or_after(pair, reorder_point: int | None) -> bool:
        return any(
            in_stock_trouble(on_hand, on_hand - reserved, reorder_point)
            for on_hand, reserved in (levels[pair], levels_before[pair])
        )

    # Most pairs are decided without their reorder point; only the others read it.
    written = {pair: levels[pair] for pair in levels if in_trouble_before_or_after(pair, None)}
    undecided = {pair for pair in levels if pair not in written}
    points = _reorder_points(undecided) if undecided else {}
    for pair in undecided:
        if in_trouble_before_or_after(pair, points[pair]):
            written[pair] = levels[pair]
    return written


def rollups_facts_record(
    *,
    deliveries: Sequence[DeliveryFact] = (),
    order_lines: Sequence[OrderLineFact] = (),
    snapshots: Sequence[SnapshotFact] = (),
) -> None:
    """Store and fold non-movement facts into the rollups. Caller is inside the writing
    transaction."""
    sums = sums_new()
    bins: defaultdict = defaultdict(int)
    if deliveries:
        rows = [_delivery_row(fact) for fact in deliveries]
        _bulk_insert(DeliveryRecord, list(DELIVERY_COLUMNS), rows)
        deliveries_fold(
            sums,
            bins,
            (
                (site_id, occurred_at, accurate, shipping_cost_e4, duration_bin)
                for site_id, occurred_at, accurate, shipping_cost_e4, _, _, duration_bin in rows
            ),
        )
    if order_lines:
        rows = _order_line_rows(order_lines)
        _bulk_insert(OrderLineRecord, list(ORDER_LINE_COLUMNS), rows)
        orders_fold(
            sums, ((site_id, occurred_at, opens) for site_id, _, occurred_at, *_, opens in rows)
        )
        latest: dict[tuple[int, int], dt.datetime] = {}
        for fact in order_lines:
            pair = (fact.site_id, fact.sku_id)
            if pair not in latest or latest[pair] < fact.occurred_at:
                latest[pair] = fact.occurred_at
        _stock_status_demand(latest)
    _rollups_add(sums, bins)
    if snapshots:
        SnapshotRecord.objects.bulk_create(_snapshot_records(snapshots))


DELIVERY_COLUMNS = (
    "site_id",
    "occurred_at",
    "accurate",
    "shipping_cost_e4",
    "order_created_at",
    "fulfillment_us",
    "fulfillment_bin",
)


def _delivery_row(fact: DeliveryFact) -> tuple:
    """A delivery record's DELIVERY_COLUMNS (a tuple: a model instance per fact costs more)."""
    duration_us = None
    if fact.order_created_at is not None:
        duration_us = (fact.occurred_at - fact.order_created_at) // dt.timedelta(microseconds=1)
    return (
        fact.site_id,
        fact.occurred_at,
        bool(fact.accurate),
        money_e4(fact.shipping_cost),
        fact.order_created_at,
        duration_us,
        None if duration_us is None else fulfillment_bin(duration_us),
    )


ORDER_LINE_COLUMNS = ("site_id", "sku_id", "occurred_at", "qty", "order_id", "opens_order")


def _order_line_rows(order_lines: Sequence[OrderLineFact]) -> list[tuple]:
    """ORDER_LINE_COLUMNS of each line; the first line of each order in the call opens it."""
    seen: set[tuple[int, str]] = set()
    rows = []
    for fact in order_lines:
        key = (fact.site_id, fact.order_id)
        opens = not fact.order_id or key not in seen
        seen.add(key)
        rows.append(
            (fact.site_id, fact.sku_id, fact.occurred_at, fact.qty, fact.order_id[:200], opens)
        )
    return rows


def _snapshot_records(snapshots: Sequence[SnapshotFact]) -> list[SnapshotRecord]:
    """Compare each snapshot with the on_hand its writer knew (`SnapshotFact.on_hand`), else
    with the ledger as it stands now (when the snapshot is applied).

    One query for all of them: nothing in this call changes the levels between two snapshots.
    """
    site_ids = {fact.site_id for fact in snapshots}
    sku_ids = {sku_id for fact in snapshots for sku_id in fact.lines}
    on_hand = {
        (site_id, sku_id): held
        for site_id, sku_id, held in StockLevel.objects.filter(
            site_id__in=site_ids, sku_id__in=sku_ids
        ).values_list("site_id", "sku_id", "on_hand")
    }
    records = []
    for fact in snapshots:
        known = fact.on_hand or {}
        lines = [
            [sku_id, qty, known.get(sku_id, on_hand.get((fact.site_id, sku_id), 0))]
            for sku_id, qty in sorted(fact.lines.items())
        ]
        records.append(
            SnapshotRecord(
                site_id=fact.site_id,
                occurred_at=fact.occurred_at,
                lines=lines,
                line_count=len(lines),
                mismatched_lines=sum(1 for _, qty, held in lines if qty != held),
                unit_difference=sum(abs(qty - held) for _, qty, held in lines),
            )
        )
    return records


# --- standard cost changes and reorder points -----------------------------------------------


def unit_cost_change_record(
    *, sku_id: int, old_cost: Decimal, new_cost: Decimal, changed_at: dt.datetime
) -> UnitCostChange | None:
    """Record a change of standard cost, effective from the next whole minute, and revalue.

    Stock held before the change (by event time) gains (new - old) per unit at that instant;
    movements already recorded at or after it were valued at the old cost and are revalued in
    their own buckets. Caller is inside the transaction that updated the SKU row (whose lock
    makes concurrent writers of this SKU wait, see `CostBook.load`).
    """
    difference = money_e4(new_cost) - money_e4(old_cost)
    if not difference:
        return None
    effective_s = minute_of(changed_at) + 60
    effective_at = instant(effective_s)
    change = UnitCostChange.objects.create(
        sku_id=sku_id,
        effective_at=effective_at,
        old_cost_e4=money_e4(old_cost),
        new_cost_e4=money_e4(new_cost),
    )
    held = Movement.objects.filter(sku_id=sku_id, occurred_at__lt=effective_at).values("site_id")
    revaluations = [
        (row["site_id"], sku_id, effective_s, row["on_hand"] * difference)
        for row in held.order_by("site_id").annotate(on_hand=Sum("on_hand_delta"))
        if row["on_hand"]
    ]
    sums = sums_new()
    revaluations_fold(sums, revaluations)
    later = Movement.objects.filter(sku_id=sku_id, occurred_at__gte=effective_at).values_list(
        "site_id", "sku_id", "kind", "on_hand_delta", "occurred_at"
    )
    movements_fold(sums, later.iterator(), FlatCost(difference), money_only=True)
    _rollups_add(sums)
    _revaluations_insert(revaluations)
    return change


def stock_status_reorder_points_refresh(*, sku_id: int, site_id: int | None = None) -> None:
    """Copy the effective reorder points of a SKU (at one site or all) into `StockStatus`,
    with the levels as they stand.

    The levels are copied too: a row out of trouble may hold stale values (the level writers
    leave it alone, see `_levels_in_or_out_of_trouble`), and a new point may put the pair in
    trouble.
    """
    table = StockStatus._meta.db_table
    with transaction.atomic():
        # Level writers hold FOR SHARE on the SKU row from `CostBook.load` to their commit,
        # before they write their stock status rows: taking the row here waits for those in
        # flight and makes the next ones wait, so the levels read below are the ones their
        # rows were (or will be) written against. A SKU's save already holds it.
        list(Sku.objects.select_for_update(no_key=True).filter(pk=sku_id).values_list("pk"))
        rows = StockStatus.objects.filter(sku_id=sku_id)
        if site_id is not None:
            rows = rows.filter(site_id=site_id)
        pairs = set(rows.values_list("site_id", "sku_id"))
        if not pairs:
            return
        by_point: dict[int | None, list[int]] = defaultdict(list)
        for (site, _sku), point in _reorder_points(pairs).items():
            by_point[point].append(site)
        levels = {
            site: (on_hand, on_hand - reserved)
            for site, on_hand, reserved in StockLevel.objects.filter(
                sku_id=sku_id, site_id__in={site for site, _ in pairs}
            ).values_list("site_id", "on_hand", "reserved")
        }
        changes = []
        for point, sites in sorted(by_point.items(), key=lambda item: (item[0] is None, item[0])):
            if connection.vendor != "postgresql":
                before = _status_states_read(sorted((site, sku_id) for site in sites))
                after = {}
                for (site, sku), state in before.items():
                    if state[STATE_REORDER_POINT] == point:
                        continue
                    has_level, on_hand, available, _, last_order_line_at = state
                    # A pair known only from demand has no level: its row stays as it is.
                    on_hand, available = levels.get(site, (on_hand, available))
                    after[(site, sku)] = (has_level, on_hand, available, point, last_order_line_at)
                    StockStatus.objects.filter(site_id=site, sku_id=sku).update(
                        on_hand=on_hand, available=available, reorder_point=point
                    )
                changes += _state_changes(before, after)
                continue
            level = StockLevel._meta.db_table
            of_row = (
                f"FROM {level} l WHERE l.site_id = {table}.site_id AND l.sku_id = {table}.sku_id"
            )
            with connection.cursor() as cursor:
                # The update locks each row and reads its latest state: old and new are exact.
                _status_write(
                    cursor,
                    f"UPDATE {table} SET reorder_point = %s, "  # noqa: S608
                    f"on_hand = COALESCE((SELECT l.on_hand {of_row}), {table}.on_hand), "
                    f"available = COALESCE((SELECT l.on_hand - l.reserved {of_row}), "
                    f"{table}.available), {_was_set(table)} "
                    "WHERE sku_id = %s AND site_id = ANY(%s::bigint[]) "
                    "AND reorder_point IS DISTINCT FROM %s",
                    [point, sku_id, pg_int_array(sorted(sites)), point],
                )
        _trouble_counts_add(changes)


# --- rebuilding everything from the ledger and the stored facts -----------------------------


REBUILD_CHUNK = 20000


def rollups_rebuild(
    *, site_id: int | None = None, progress: Callable[[str, int, int], None] | None = None
) -> dict[str, int]:
    """Recompute every rollup (of one site, or all) from the ledger and the stored facts.

    Runs in one transaction and locks the rollup tables against writers meanwhile (they wait,
    then add what they wrote on top, so nothing is lost or counted twice).
    """
    progress = progress or (lambda stage, done, total: None)
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "LOCK TABLE "
                    + ", ".join(
                        model._meta.db_table
                        for model in (
                            KpiBucket,
                            FulfillmentBin,
                            Revaluation,
                            StockStatus,
                            StockTroubleCount,
                        )
                    )
                    + " IN EXCLUSIVE MODE"
                )
        scope = Q() if site_id is None else Q(site_id=site_id)
        # The all-sites rows are summed again from the sites' rows below.
        scope_and_all = Q() if site_id is None else Q(site_id__in=[site_id, ALL_SITES])
        KpiBucket.objects.filter(scope_and_all).delete()
        FulfillmentBin.objects.filter(scope_and_all).delete()
        Revaluation.objects.filter(scope).delete()
        StockStatus.objects.filter(scope).delete()
        StockTroubleCount.objects.filter(scope_and_all).delete()

        sums = sums_new()
        bins: defaultdict = defaultdict(int)
        revaluations: list = []
        book = CostBook.load()
        movements = Movement.objects.filter(scope)
        total = movements.count()
        rows = movements.order_by().values_list(
            "site_id", "sku_id", "kind", "on_hand_delta", "occurred_at"
        )
        done = 0
        iterator = rows.iterator(chunk_size=REBUILD_CHUNK)
        while chunk := list(itertools.islice(iterator, REBUILD_CHUNK)):
            movements_fold(sums, chunk, book, revaluations)
            done += len(chunk)
            progress("movements", done, total)
        revaluations_fold(sums, revaluations)

        deliveries = DeliveryRecord.objects.filter(scope).order_by()
        deliveries_fold(
            sums,
            bins,
            deliveries.values_list(
                "site_id", "occurred_at", "accurate", "shipping_cost_e4", "fulfillment_bin"
            ).iterator(chunk_size=REBUILD_CHUNK),
        )
        progress("deliveries", 1, 1)
        latest: dict[tuple[int, int], dt.datetime] = {}
        order_rows = (
            OrderLineRecord.objects.filter(scope)
            .order_by()
            .values_list("site_id", "sku_id", "occurred_at", "opens_order")
        )
        for line_site, sku_id, occurred_at, opens_order in order_rows.iterator(
            chunk_size=REBUILD_CHUNK
        ):
            if opens_order:
                sums[(line_site, minute_of(occurred_at))][ORDERS] += 1
            pair = (line_site, sku_id)
            if pair not in latest or latest[pair] < occurred_at:
                latest[pair] = occurred_at
        progress("order lines", 1, 1)

        buckets = _bucket_rows(sums, all_sites=False)
        # Rows go in in key order (here and in `_all_sites_sum`), so that a window's rows
        # share pages, as the writers' rows do (they arrive in time order): in the order the
        # ledger happened to be read, a 30-day window's histogram rows sat one to a page.
        _bulk_insert(
            KpiBucket,
            ["site_id", "span_s", "start", "shard", *FIELDS],
            (
                [site, span, instant(start), 0, *values]
                for (site, span, start), values in sorted(buckets.items())
            ),
        )
        _bulk_insert(
            FulfillmentBin,
            ["site_id", "span_s", "start", "bin_group", "shard", *BIN_COUNT_FIELDS],
            (
                [site, span, instant(start), group, 0, *counts]
                for (site, span, start, group), counts in sorted(_bin_rows(bins).items())
                if site != ALL_SITES
            ),
        )
        _all_sites_rows_sum()
        _revaluations_insert(revaluations)
        progress("rollups", 1, 1)
        levels = StockLevel.objects.filter(scope).values_list(
            "site_id", "sku_id", "on_hand", "reserved"
        )
        status = {
            (level_site, sku_id): [True, on_hand, on_hand - reserved, None, None]
            for level_site, sku_id, on_hand, reserved in levels.iterator(chunk_size=REBUILD_CHUNK)
        }
        for pair, moment in latest.items():
            status.setdefault(pair, [False, 0, 0, None, None])[4] = moment
        for pair, point in _reorder_points_all(scope).items():
            if pair in status:
                status[pair][3] = point
        _bulk_insert(
            StockStatus,
            [
                "site_id",
                "sku_id",
                "has_level",
                "on_hand",
                "available",
                "reorder_point",
                "last_order_line_at",
            ],
            ([site, sku, *state] for (site, sku), state in status.items()),
        )
        _trouble_counts_rebuild(status)
        progress("stock status", 1, 1)
    return {
        "movements": total,
        "buckets": len(buckets),
        "stock_levels": len(status),
    }


def _trouble_counts_rebuild(status: dict[tuple[int, int], list]) -> None:
    """Recount the trouble counters of these pairs' sites (their rows were deleted), then the
    all-sites rows as the sum of every site's."""
    counts: defaultdict = defaultdict(lambda: [0] * len(TROUBLE_COUNT_FIELDS))
    for (site_id, _sku_id), state in status.items():
        _trouble_add(counts, site_id, _trouble_of_state(state), 1)
    _bulk_insert(
        StockTroubleCount,
        ["site_id", "span_s", "start", "shard", *TROUBLE_COUNT_FIELDS],
        (
            [site, span, instant(start), 0, *values]
            for (site, span, start), values in sorted(counts.items())
            if site != ALL_SITES and any(values)
        ),
    )
    _all_sites_sum(StockTroubleCount, ("span_s", "start"), TROUBLE_COUNT_FIELDS)


def _reorder_points_all(scope: Q) -> dict[tuple[int, int], int | None]:
    defaults = dict(Sku.objects.values_list("id", "reorder_point"))
    points = {
        pair: defaults.get(pair[1])
        for pair in StockLevel.objects.filter(scope).values_list("site_id", "sku_id")
    }
    for site, sku, point in SiteReorderPoint.objects.filter(scope).values_list(
        "site_id", "sku_id", "reorder_point"
    ):
        if (site, sku) in points:
            points[(site, sku)] = point
    return points


def _all_sites_rows_sum() -> None:
    """(Re)create the all-sites rows of the rollups as sums of the sites' rows."""
    _all_sites_sum(FulfillmentBin, ("span_s", "start", "bin_group"), BIN_COUNT_FIELDS)
    _all_sites_sum(KpiBucket, ("span_s", "start"), FIELDS)


def _all_sites_sum(model, key_fields: Sequence[str], value_fields: Sequence[str]) -> None:
    """Insert the all-sites rows (shard 0) of a rollup table as sums of the sites' rows."""
    table = model._meta.db_table
    keys = ", ".join(key_fields)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (site_id, {keys}, shard, {', '.join(value_fields)}) "  # noqa: S608
            f"SELECT %s, {keys}, 0, {', '.join(f'SUM({name})' for name in value_fields)} "
            f"FROM {table} WHERE site_id <> %s GROUP BY {keys} ORDER BY {keys}",
            [ALL_SITES, ALL_SITES],
        )


def _bulk_insert(model, columns: list[str], rows: Iterable[list]) -> None:
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
                _adapt(value) if isinstance(value, dt.datetime) else value for value in row
            )
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES "  # noqa: S608
                f"{', '.join([placeholder] * len(chunk))}",
                params,
            )
