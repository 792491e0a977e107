"""KPI rollups, kept by the writers in the same transaction as the facts they come from.

CONTRACT (signatures fixed; see docs/kpis.md for the design):
- `rollups_movements_record(movements=..., levels=..., levels_before=...)` is called (through
  the ledger's hook `ledger.signals.movements_recorded`, `kpis.receivers`) by
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
functions serve the writers, `rollups_rebuild` and the exact window edges in `kpis.reads`.

Unit costs: a movement is valued at the standard cost in effect at its `occurred_at`, read from
`Sku.unit_cost` and the `UnitCostChange` history (see `unit_cost_change_record`).
"""

import datetime as dt
import operator
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Sum

from kpis.breakdown_rollups import breakdowns_add, breakdowns_fold, breakdowns_new
from kpis.buckets import (
    bulk_insert,
    deliveries_fold,
    movements_fold,
    orders_fold,
    revaluations_fold,
    revaluations_insert,
    rollups_add,
    sums_new,
)
from kpis.checkpoints import checkpoints_add
from kpis.costs import CostBook, FlatCost
from kpis.models import (
    DeliveryRecord,
    OrderLineRecord,
    SnapshotRecord,
    UnitCostChange,
    in_stock_trouble,
)
from kpis.stock_status import reorder_points, stock_status_demand, stock_status_upsert
from kpis.trouble_hours import since_by_pair, trouble_steps_refresh
from kpis.units import fulfillment_bin, instant, minute_of, money_e4
from ledger.models import (
    Movement,
    StockLevel,
)
from ledger.services import MOVEMENT_COLUMNS
from slos.counters import slo_count_after_commit
from slos.models import Slo


@dataclass(frozen=True, slots=True)
class DeliveryFact:
    """One `order.delivered` applied."""

    site_id: int
    occurred_at: dt.datetime
    accurate: bool
    shipping_cost: Decimal
    order_created_at: dt.datetime | None  # None when the order's creation is not known
    channel: str = ""  # the order's channel as given in `order.created`
    courier_id: str = ""


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


# --- the hooks ------------------------------------------------------------------------------


# Where the fold finds its fields in a ledger row (`MOVEMENT_COLUMNS`).
_FOLDED_COLUMNS = operator.itemgetter(
    *(
        MOVEMENT_COLUMNS.index(name)
        for name in ("site_id", "sku_id", "kind", "on_hand_delta", "occurred_at")
    )
)
_CHECKPOINT_COLUMNS = operator.itemgetter(
    *(
        MOVEMENT_COLUMNS.index(name)
        for name in ("site_id", "sku_id", "occurred_at", "on_hand_delta", "reserved_delta")
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
    rollups_add(sums)
    revaluations_insert(revaluations)
    stock_status_upsert(_levels_in_or_out_of_trouble(levels, levels_before))
    checkpoints_add(map(_CHECKPOINT_COLUMNS, movements))
    trouble_steps_refresh(since_by_pair(row[:3] for row in map(_CHECKPOINT_COLUMNS, movements)))


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
    points = reorder_points(undecided) if undecided else {}
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
        bulk_insert(DeliveryRecord, list(DELIVERY_COLUMNS), rows)
        # (site, occurred_at, accurate, shipping, bin, channel, courier): what the folds take.
        folded = [(*row[:4], *row[6:]) for row in rows]
        deliveries_fold(sums, bins, folded)
        breakdowns = breakdowns_new()
        breakdowns_fold(breakdowns, folded)
        breakdowns_add(breakdowns)
    if order_lines:
        rows = _order_line_rows(order_lines)
        bulk_insert(OrderLineRecord, list(ORDER_LINE_COLUMNS), rows)
        orders_fold(
            sums, ((site_id, occurred_at, opens) for site_id, _, occurred_at, *_, opens in rows)
        )
        latest: dict[tuple[int, int], dt.datetime] = {}
        for fact in order_lines:
            pair = (fact.site_id, fact.sku_id)
            if pair not in latest or latest[pair] < fact.occurred_at:
                latest[pair] = fact.occurred_at
        stock_status_demand(latest)
        trouble_steps_refresh(
            since_by_pair((fact.site_id, fact.sku_id, fact.occurred_at) for fact in order_lines)
        )
    rollups_add(sums, bins)
    if snapshots:
        records = SnapshotRecord.objects.bulk_create(_snapshot_records(snapshots))
        # The correctness SLO: every line compared is one event, good when it matched.
        lines = sum(record.line_count for record in records)
        matched = lines - sum(record.mismatched_lines for record in records)
        slo_count_after_commit(Slo.CORRECTNESS, good=matched, total=lines)


DELIVERY_COLUMNS = (
    "site_id",
    "occurred_at",
    "accurate",
    "shipping_cost_e4",
    "order_created_at",
    "fulfillment_us",
    "fulfillment_bin",
    "channel",
    "courier_id",
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
        fact.channel[:100],
        fact.courier_id[:200],
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
    rollups_add(sums)
    revaluations_insert(revaluations)
    return change
