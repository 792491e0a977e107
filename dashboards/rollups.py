"""KPI rollups, kept by the writers in the same transaction as the facts they come from.

CONTRACT (stub until the KPI issue lands; signatures are fixed, bodies are the KPI engine's):
- `rollups_movements_record(applied=...)` is called by `inventory_ops.services.movements_record`
  for every ledger write (feed events, corrections, counts). From movements alone come: COGS
  (order_dispatched: -delta * unit_cost; order_returned: -delta * unit_cost), counts and
  mismatches (kind counted: on_hand_before != counted), inventory value change.
- `rollups_facts_record(...)` is called by the ingest workers, in the batch's transaction, for
  the facts that are not movements: deliveries, order lines (demand), stock snapshots.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from inventory_ops.services import AppliedMovement


@dataclass(frozen=True, slots=True)
class DeliveryFact:
    """One `order.delivered` applied."""

    site_id: int
    occurred_at: datetime
    accurate: bool
    shipping_cost: Decimal
    order_created_at: datetime | None  # None when the order's creation is not known


@dataclass(frozen=True, slots=True)
class OrderLineFact:
    """One line of an `order.created` applied: demand for a (site, SKU)."""

    site_id: int
    sku_id: int
    occurred_at: datetime
    qty: int


@dataclass(frozen=True, slots=True)
class SnapshotFact:
    """One `stock.snapshot` applied: an external system's on-hand view of a site."""

    site_id: int
    occurred_at: datetime
    lines: dict[int, int]  # sku_id -> qty


def rollups_movements_record(*, applied: Sequence[AppliedMovement]) -> None:
    """Fold ledger movements into the rollups. Caller is inside the writing transaction."""


def rollups_facts_record(
    *,
    deliveries: Sequence[DeliveryFact] = (),
    order_lines: Sequence[OrderLineFact] = (),
    snapshots: Sequence[SnapshotFact] = (),
) -> None:
    """Fold non-movement facts into the rollups. Caller is inside the writing transaction."""
