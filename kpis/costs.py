"""The standard cost of a SKU in effect at an instant (`Sku.unit_cost` and `UnitCostChange`)."""

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable

from django.db import connection
from django.db.models import BooleanField
from django.db.models.expressions import RawSQL

from core.db import pg_int_array
from kpis.models import (
    UnitCostChange,
)
from kpis.units import money_e4
from ledger.models import (
    Sku,
)


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
