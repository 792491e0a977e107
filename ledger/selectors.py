"""Reads of the stock domain: what the screens, the API and the checks show of it."""

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from django.apps import apps
from django.db import connection
from django.db.models import Count, F, IntegerField, OuterRef, Q, QuerySet, Subquery, Sum, TextField
from django.db.models.functions import Cast, Coalesce

from core.timebounds import STORABLE_FROM, STORABLE_UNTIL
from core.timechecks import STORABLE_CHECK_SUFFIX, storable_check_field
from ledger.exceptions import UnknownSite, UnknownSku
from ledger.models import Movement, Site, SiteReorderPoint, Sku, StockLevel

# Codes per lookup: under the 999 parameters of a statement in older SQLite builds.
CODE_LOOKUP_CHUNK = 900


def _code_chunks(codes: Iterable[str]) -> Iterator[list[str]]:
    code_list = sorted(set(codes))
    for start in range(0, len(code_list), CODE_LOOKUP_CHUNK):
        yield code_list[start : start + CODE_LOOKUP_CHUNK]


def _known_require(model: type[Site] | type[Sku], codes: Iterable[str], found: dict) -> None:
    if missing := set(codes) - found.keys():
        raise (UnknownSite if model is Site else UnknownSku)(missing)


def ids_by_code(
    model: type[Site] | type[Sku], codes: Iterable[str], *, required: bool = False
) -> dict[str, int]:
    """The ids of the sites (or SKUs) with these codes; a code that names nothing is left out,
    or with `required` raises UnknownSite (UnknownSku).

    The one code-to-id lookup of the project (the ledger, feed validation, count sheets): a feed
    batch or count sheet naming thousands of codes is looked up a chunk at a time.
    """
    found: dict[str, int] = {}
    for chunk in _code_chunks(codes):
        found.update(model.objects.filter(code__in=chunk).values_list("code", "id"))
    if required:
        _known_require(model, codes, found)
    return found


def rows_by_code(model: type[Site] | type[Sku], codes: Iterable[str]) -> dict:
    """The sites (or SKUs) with these codes, whole rows, by code, for a writer that needs
    more than their ids (corrections: a SKU's unit cost). Raises UnknownSite (UnknownSku) if
    a code names nothing."""
    found = {}
    for chunk in _code_chunks(codes):
        found.update((row.code, row) for row in model.objects.filter(code__in=chunk))
    _known_require(model, codes, found)
    return found


def _id_of(model: type[Site] | type[Sku], code: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id FROM {model._meta.db_table} WHERE code = %s", [code])  # noqa: S608
        row = cursor.fetchone()
    if row is None:
        raise (UnknownSite if model is Site else UnknownSku)([code])
    return row[0]


def site_id_of(code: str | None) -> int | None:
    """The id of the site with this code (None for None or "": all sites); raises UnknownSite.

    Every KPI read of one site asks this first, so it is one statement of raw SQL: the ORM's
    `values_list(...).first()` took three times as long in one process (2.4-3.2 ms against
    0.7-0.75 ms at load 12-13, most of it building the query).
    """
    return _id_of(Site, code) if code else None


def sku_id_of(code: str | None) -> int | None:
    """The id of the SKU with this code (None for None or "": all SKUs); raises UnknownSku."""
    return _id_of(Sku, code) if code else None


def sites_ordered() -> QuerySet[Site]:
    """Every site by code, only its code loaded (a page's site picker)."""
    return Site.objects.only("code").order_by("code")


def site_codes() -> list[str]:
    return list(Site.objects.order_by("code").values_list("code", flat=True))


def sites_with_stock_totals() -> list[Site]:
    """Every site by code, each with `skus` (stock levels), `on_hand` and `reserved` summed."""
    return list(
        Site.objects.annotate(
            skus=Count("stock_levels"),
            on_hand=Sum("stock_levels__on_hand"),
            reserved=Sum("stock_levels__reserved"),
        ).order_by("code")
    )


def stock_levels_lowest_available(*, site_code: str | None, limit: int) -> list[StockLevel]:
    """The `limit` stock levels with the least available (of one site, or all), site and SKU
    loaded; ties by site and SKU code."""
    levels = StockLevel.objects.with_available_units().select_related("site", "sku")
    if site_code:
        levels = levels.filter(site__code=site_code)
    return list(levels.order_by("available_units", "site__code", "sku__code")[:limit])


def sku_stock_levels(sku: Sku) -> QuerySet[StockLevel]:
    """A SKU's stock levels at every site, by site code, site loaded."""
    return StockLevel.objects.filter(sku=sku).select_related("site").order_by("site__code")


def level_movements(*, site_id: int, sku_id: int) -> QuerySet[Movement]:
    """The movements of one stock level, newest first, who made each loaded."""
    return (
        Movement.objects.for_level(site_id=site_id, sku_id=sku_id)
        .select_related("user")
        .order_by("-id")
    )


def stock_levels_search(*, text: str, site: Site | None) -> QuerySet[StockLevel]:
    """Stock levels whose SKU code or name contains `text` (any case), at `site` (None: all),
    with `available_units` and the reorder point that applies (the site's own, else the SKU's)."""
    site_point = SiteReorderPoint.objects.filter(
        site_id=OuterRef("site_id"), sku_id=OuterRef("sku_id")
    ).values("reorder_point")[:1]
    levels = (
        StockLevel.objects.with_available_units()
        .select_related("site", "sku")
        .annotate(
            applied_reorder_point=Coalesce(
                Subquery(site_point, output_field=IntegerField()), F("sku__reorder_point")
            ),
        )
        .order_by("sku__code", "site__code")
    )
    if text:
        levels = levels.filter(Q(sku__code__icontains=text) | Q(sku__name__icontains=text))
    if site is not None:
        levels = levels.filter(site=site)
    return levels


@dataclass(frozen=True)
class StockPage:
    count: int  # levels matching, on every page
    rows: list[tuple[str, str, int, int]]  # (site code, SKU code, on_hand, reserved)


def stock_page(
    *, site_code: str | None = None, sku_code: str | None = None, offset: int, limit: int
) -> StockPage:
    """Stock levels by site and SKU code, of one site and/or SKU if given, `limit` from
    `offset`. Raises UnknownSite or UnknownSku for a code that names nothing."""
    levels = StockLevel.objects.all()
    if site_code:
        levels = levels.filter(site_id=site_id_of(site_code))
    if sku_code:
        levels = levels.filter(sku_id=sku_id_of(sku_code))
    rows = levels.order_by("site__code", "sku__code").values_list(
        "site__code", "sku__code", "on_hand", "reserved"
    )[offset : offset + limit]
    return StockPage(count=levels.count(), rows=list(rows))


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
