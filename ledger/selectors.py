"""Reads of the stock domain."""

from dataclasses import dataclass

from django.apps import apps
from django.db.models import Count, Sum, TextField
from django.db.models.functions import Cast

from core.timebounds import STORABLE_FROM, STORABLE_UNTIL
from core.timechecks import STORABLE_CHECK_SUFFIX, storable_check_field
from ledger.models import Movement, Site, Sku, StockLevel


@dataclass(frozen=True)
class LedgerDifference:
    site: str
    sku: str
    level_on_hand: int | None
    ledger_on_hand: int
    level_reserved: int | None
    ledger_reserved: int

    def __str__(self) -> str:
        if self.level_on_hand is None:
            return (
                f"{self.site}/{self.sku}: no stock level, but movements sum to "
                f"on_hand {self.ledger_on_hand}, reserved {self.ledger_reserved}"
            )
        return (
            f"{self.site}/{self.sku}: level on_hand {self.level_on_hand} vs ledger "
            f"{self.ledger_on_hand}; level reserved {self.level_reserved} vs ledger "
            f"{self.ledger_reserved}"
        )


def ledger_differences(*, site_code: str | None = None) -> tuple[int, list[LedgerDifference]]:
    """Compare every stock level with the sum of its movements.

    Return (number of levels checked, differences). A level with no movements must be zero.
    """
    levels = StockLevel.objects.all()
    movements = Movement.objects.all()
    if site_code:
        levels = levels.filter(site__code=site_code)
        movements = movements.filter(site__code=site_code)
    sums = {
        (row["site_id"], row["sku_id"]): (row["on_hand"], row["reserved"])
        for row in movements.order_by()
        .values("site_id", "sku_id")
        .annotate(on_hand=Sum("on_hand_delta"), reserved=Sum("reserved_delta"), n=Count("id"))
    }
    site_codes = dict(Site.objects.values_list("id", "code"))
    sku_codes = dict(Sku.objects.values_list("id", "code"))
    differences = []
    checked = 0
    for site_id, sku_id, on_hand, reserved in levels.values_list(
        "site_id", "sku_id", "on_hand", "reserved"
    ).iterator(chunk_size=5000):
        checked += 1
        ledger_on_hand, ledger_reserved = sums.pop((site_id, sku_id), (0, 0))
        if (on_hand, reserved) != (ledger_on_hand, ledger_reserved):
            differences.append(
                LedgerDifference(
                    site_codes[site_id],
                    sku_codes[sku_id],
                    on_hand,
                    ledger_on_hand,
                    reserved,
                    ledger_reserved,
                )
            )
    for (site_id, sku_id), (ledger_on_hand, ledger_reserved) in sums.items():
        # The ledger keeps no database foreign keys (see Movement): name a missing site or SKU.
        differences.append(
            LedgerDifference(
                site_codes.get(site_id, f"<missing site #{site_id}>"),
                sku_codes.get(sku_id, f"<missing SKU #{sku_id}>"),
                None,
                ledger_on_hand,
                None,
                ledger_reserved,
            )
        )
    differences.sort(key=lambda difference: (difference.site, difference.sku))
    return checked, differences


@dataclass(frozen=True)
class StoredTimeOutOfRange:
    table: str
    row_id: object
    column: str
    stored: str  # as PostgreSQL prints it: Python cannot hold the value itself

    def __str__(self) -> str:
        return f"{self.table} #{self.row_id}: {self.column} = {self.stored}"


def stored_times_out_of_range(*, limit: int = 20) -> tuple[int, list[StoredTimeOutOfRange]]:
    """Find rows whose event time lies outside what is stored (rows kept from before the
    CHECK constraints of `core.timechecks`, which no read path can load).

    Every model's `storable_time_check` constraints are found through the app registry, so
    that this low layer imports no higher one. The times are read as text. Return the number
    of such rows and up to `limit` of them per column.
    """
    found: list[StoredTimeOutOfRange] = []
    total = 0
    for model in apps.get_models():
        for constraint in model._meta.constraints:
            if not constraint.name.endswith(STORABLE_CHECK_SUFFIX):
                continue
            field = storable_check_field(constraint)
            column = model._meta.get_field(field).column
            outside = (
                model._base_manager.exclude(**{f"{field}__isnull": True})
                .exclude(**{f"{field}__gte": STORABLE_FROM, f"{field}__lt": STORABLE_UNTIL})
                .order_by("pk")
            )
            count = outside.count()
            total += count
            found.extend(
                StoredTimeOutOfRange(model._meta.db_table, pk, column, stored)
                for pk, stored in outside.values_list("pk", Cast(field, TextField()))[:limit]
            )
    return total, found
