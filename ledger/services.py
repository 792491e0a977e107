"""The only writer of stock: every change to a stock level goes through `movements_record`.

How a call keeps the ledger right:
1. site and SKU codes are resolved first, so an unknown code fails before anything is written;
2. the affected stock levels are created if missing, then locked with SELECT ... FOR UPDATE in
   one fixed order (primary key), so concurrent writers queue instead of deadlocking;
3. each request is applied in the caller's order against the locked values (a count sets on_hand
   to what was counted, so it needs the value left by the movements before it in the same call);
4. the movements are inserted in bulk (COPY on PostgreSQL) and the levels updated in bulk in
   place (`on_hand = on_hand + delta`), in the same transaction.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from django.db import connection, transaction
from django.utils import timezone

from core.db import copy_rows, pg_int_array, run_atomic_with_retry
from ledger.catalog import SiteRow, SkuRow
from ledger.exceptions import (
    CatalogImportNotAllowed,
    InvalidMovement,
)
from ledger.models import (
    Movement,
    MovementCause,
    MovementKind,
    Site,
    Sku,
    StockLevel,
)
from ledger.selectors import ids_by_code
from ledger.signals import movements_recorded

MOVEMENT_INSERT_BATCH = 1000
LEVEL_UPDATE_BATCH = 500
LEVEL_LOOKUP_BATCH = 500


# Named tuples rather than frozen dataclasses: a group of feed batches makes ~20,000 of each,
# and a frozen dataclass cost ~5 us to build (one object.__setattr__ per field), a named tuple
# about a third of that. Both are immutable and read by attribute.
class MovementRequest(NamedTuple):
    """One change asked of the ledger.

    For `MovementKind.COUNTED`, give `counted_qty` instead of deltas: the on_hand delta is
    computed under the lock as counted_qty minus the on_hand it finds.
    """

    site: str
    sku: str
    kind: str
    occurred_at: datetime
    on_hand_delta: int = 0
    reserved_delta: int = 0
    counted_qty: int | None = None
    cause: str = MovementCause.FEED_EVENT
    cause_ref: str = ""
    user_id: int | None = None


class AppliedMovement(NamedTuple):
    """What a request did: on_hand before it and the deltas written."""

    request: MovementRequest
    site_id: int
    sku_id: int
    on_hand_before: int
    on_hand_delta: int
    reserved_delta: int

    @property
    def on_hand_after(self) -> int:
        return self.on_hand_before + self.on_hand_delta


def movements_record(*, requests: Sequence[MovementRequest]) -> list[AppliedMovement]:
    """Apply the requests to the ledger in one transaction, in order; all or nothing.

    Raises UnknownSite, UnknownSku or InvalidMovement before writing anything. Called outside a
    transaction, it retries deadlocks and serialization failures itself; inside one, the caller
    that opened the outermost block retries (see `core.db.run_atomic_with_retry`).
    """
    if not requests:
        return []
    _requests_validate(requests)
    return run_atomic_with_retry(lambda: _movements_record_in_transaction(requests))


_KINDS = frozenset(MovementKind.values)
_CAUSES = frozenset(MovementCause.values)
_COUNTED = MovementKind.COUNTED.value


def _requests_validate(requests: Sequence[MovementRequest]) -> None:
    """Raise InvalidMovement for the first invalid request.

    The common case (known kinds and causes, no counts) is checked in bulk; only counts and
    anything suspicious go through the per-request checks.
    """
    suspicious = (
        not {request.kind for request in requests} <= _KINDS
        or not {request.cause for request in requests} <= _CAUSES
    )
    for request in requests:
        if suspicious or request.counted_qty is not None or request.kind == _COUNTED:
            _request_validate(request)


def _request_validate(request: MovementRequest) -> None:
    if request.kind not in _KINDS:
        raise InvalidMovement(f"unknown movement kind {request.kind!r}")
    if request.cause not in _CAUSES:
        raise InvalidMovement(f"unknown movement cause {request.cause!r}")
    if request.kind == MovementKind.COUNTED:
        if request.counted_qty is None or request.counted_qty < 0:
            raise InvalidMovement("a count needs counted_qty >= 0")
        if request.on_hand_delta or request.reserved_delta:
            raise InvalidMovement("a count gives counted_qty, not deltas")
    elif request.counted_qty is not None:
        raise InvalidMovement("counted_qty is only for counts")


def _movements_record_in_transaction(requests: Sequence[MovementRequest]) -> list[AppliedMovement]:
    site_ids = ids_by_code(Site, {request.site for request in requests}, required=True)
    sku_ids = ids_by_code(Sku, {request.sku for request in requests}, required=True)
    code_pairs = {(request.site, request.sku) for request in requests}
    locked = stock_levels_lock({(site_ids[site], sku_ids[sku]) for site, sku in code_pairs})
    level_by_codes = {
        (site, sku): locked[(site_ids[site], sku_ids[sku])] for site, sku in code_pairs
    }

    # One pass over the requests builds the ledger rows (in the COPY's column order) and what
    # each request did; the locked rows are the working copy, so later requests in this call
    # see the values the earlier ones left (a count above all).
    recorded_at = timezone.now()
    rows: list[tuple] = []  # MOVEMENT_COLUMNS
    applied: list[AppliedMovement] = []
    for request in requests:
        (
            site,
            sku,
            kind,
            occurred_at,
            on_hand_delta,
            reserved_delta,
            counted_qty,
            cause,
            cause_ref,
            user_id,
        ) = request
        level = level_by_codes[(site, sku)]
        on_hand_before, reserved_before = level.on_hand, level.reserved
        if counted_qty is not None:  # a count (validated): the delta is taken under the lock
            on_hand_delta = counted_qty - on_hand_before
        level.on_hand = on_hand_after = on_hand_before + on_hand_delta
        level.reserved = reserved_after = reserved_before + reserved_delta
        rows.append(
            (
                level.site_id,
                level.sku_id,
                kind,
                on_hand_delta,
                reserved_delta,
                on_hand_after,
                reserved_after,
                occurred_at,
                cause,
                cause_ref[:300],
                user_id,
                recorded_at,
            )
        )
        applied.append(
            AppliedMovement(
                request,
                level.site_id,
                level.sku_id,
                on_hand_before,
                on_hand_delta,
                reserved_delta,
            )
        )

    _movements_insert(rows)
    levels = list(locked.values())
    _stock_levels_add(levels)
    movements_recorded.send(
        sender=Movement,
        movements=rows,
        levels={(level.site_id, level.sku_id): (level.on_hand, level.reserved) for level in levels},
        levels_before={
            (level.site_id, level.sku_id): (level.on_hand_locked, level.reserved_locked)
            for level in levels
        },
    )
    return applied


MOVEMENT_COLUMNS = (
    "site_id",
    "sku_id",
    "kind",
    "on_hand_delta",
    "reserved_delta",
    "on_hand_after",
    "reserved_after",
    "occurred_at",
    "cause",
    "cause_ref",
    "user_id",
    "recorded_at",
)


def _movements_insert(rows: list[tuple]) -> None:
    """Insert ledger rows (MOVEMENT_COLUMNS). Caller holds the level locks.

    On PostgreSQL with a binary COPY: several times faster than a multi-row INSERT, and a feed batch
    writes thousands of movements. Elsewhere through the ORM.
    """
    if connection.vendor != "postgresql":
        Movement.objects.bulk_create(
            [Movement(**dict(zip(MOVEMENT_COLUMNS, row, strict=True))) for row in rows],
            batch_size=MOVEMENT_INSERT_BATCH,
        )
        return
    copy_rows(Movement, MOVEMENT_COLUMNS, rows)


@dataclass(slots=True)
class LockedLevel:
    """A locked stock level's working copy (a model instance per level costs too much here).

    `on_hand` and `reserved` move as requests are applied; the `*_locked` values are what the
    lock found, so the level update adds the difference.
    """

    pk: int
    site_id: int
    sku_id: int
    on_hand: int
    reserved: int
    on_hand_locked: int
    reserved_locked: int


def stock_levels_lock(pairs: set[tuple[int, int]]) -> dict[tuple[int, int], LockedLevel]:
    """Lock the levels of (site id, SKU id) `pairs` in primary-key order, creating missing ones.

    The one way to lock stock levels, and the only place that creates them: a room that must
    read stock under the lock before it asks for movements (corrections take a count's delta
    from it) calls this, and `movements_record` later in the same transaction takes the locks
    it already holds. Changing the returned working copies writes nothing.

    Precondition: inside a transaction. Levels created here get higher keys than every existing
    level, so locking existing ones first and new ones after still follows key order.
    """
    levels = _stock_levels_select_for_update(pairs)
    missing = pairs - levels.keys()
    if missing:
        StockLevel.objects.bulk_create(
            [StockLevel(site_id=site_id, sku_id=sku_id) for site_id, sku_id in sorted(missing)],
            ignore_conflicts=True,
        )
        levels.update(_stock_levels_select_for_update(missing))
    return levels


def _stock_levels_select_for_update(
    pairs: Iterable[tuple[int, int]],
) -> dict[tuple[int, int], LockedLevel]:
    # A row-value IN list locks exactly the pairs asked for (site_id IN .. AND sku_id IN ..
    # would lock their whole cross product).
    table = StockLevel._meta.db_table
    levels: dict[tuple[int, int], LockedLevel] = {}
    pair_list = sorted(pairs)
    if not pair_list:
        return levels
    if connection.vendor == "postgresql":
        # One statement with two array parameters: every lock in one id order, and no
        # thousands of placeholders for the driver to parse.
        site_ids, sku_ids = (list(column) for column in zip(*pair_list, strict=True))
        sql = (
            f"SELECT id, site_id, sku_id, on_hand, reserved FROM {table} "  # noqa: S608
            "WHERE (site_id, sku_id) IN (SELECT * FROM unnest(%s::bigint[], %s::bigint[])) "
            "ORDER BY id FOR UPDATE"
        )
        chunks = [(sql, [pg_int_array(site_ids), pg_int_array(sku_ids)])]
    else:
        lock_clause = " FOR UPDATE" if connection.features.has_select_for_update else ""
        chunks = []
        for start in range(0, len(pair_list), LEVEL_LOOKUP_BATCH):
            chunk = pair_list[start : start + LEVEL_LOOKUP_BATCH]
            placeholders = ", ".join(["(%s, %s)"] * len(chunk))
            params = [value for pair in chunk for value in pair]
            # Only the table name and placeholders are interpolated; values go as parameters.
            sql = (
                f"SELECT id, site_id, sku_id, on_hand, reserved FROM {table} "  # noqa: S608
                f"WHERE (site_id, sku_id) IN (VALUES {placeholders}) ORDER BY id{lock_clause}"
            )
            chunks.append((sql, params))
    with connection.cursor() as cursor:
        for sql, params in chunks:
            cursor.execute(sql, params)
            for pk, site_id, sku_id, on_hand, reserved in cursor.fetchall():
                levels[(site_id, sku_id)] = LockedLevel(
                    pk, site_id, sku_id, on_hand, reserved, on_hand, reserved
                )
    return levels


def _stock_levels_add(levels: Iterable[LockedLevel]) -> None:
    """Add what the requests moved to the levels in place (`x = x + delta`). Caller holds the
    row locks.

    One UPDATE ... FROM a list of deltas: a CASE expression per row, as Django's bulk_update
    builds, costs milliseconds per level to compile and dominated a feed batch.
    """
    deltas = sorted(
        (level.pk, level.on_hand - level.on_hand_locked, level.reserved - level.reserved_locked)
        for level in levels
        if level.on_hand != level.on_hand_locked or level.reserved != level.reserved_locked
    )
    if not deltas:
        return
    table = StockLevel._meta.db_table
    now = timezone.now()
    assignments = (
        f"on_hand = {table}.on_hand + delta.on_hand, "
        f"reserved = {table}.reserved + delta.reserved, updated_at = %s"
    )
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            columns = [pg_int_array(column) for column in zip(*deltas, strict=True)]
            # Only the table name is interpolated; values go as array parameters.
            cursor.execute(
                f"UPDATE {table} SET {assignments} FROM unnest("  # noqa: S608
                "%s::bigint[], %s::bigint[], %s::bigint[]) AS delta(level_id, on_hand, reserved) "
                f"WHERE {table}.id = delta.level_id",
                [now, *columns],
            )
            return
        for start in range(0, len(deltas), LEVEL_UPDATE_BATCH):
            chunk = deltas[start : start + LEVEL_UPDATE_BATCH]
            rows = ", ".join(["(%s, %s, %s)"] * len(chunk))
            params = [value for delta in chunk for value in delta]
            # Only the table name and placeholders are interpolated; values go as parameters.
            cursor.execute(
                f"WITH delta(level_id, on_hand, reserved) AS (VALUES {rows}) "  # noqa: S608
                f"UPDATE {table} SET {assignments} FROM delta WHERE {table}.id = delta.level_id",
                [*params, now],
            )


CATALOG_IMPORT_PERMISSIONS = (
    "inventory_ops.add_site",
    "inventory_ops.change_site",
    "inventory_ops.add_sku",
    "inventory_ops.change_sku",
)


@transaction.atomic
def catalog_import(
    *, sites: Sequence[SiteRow] = (), skus: Sequence[SkuRow] = (), imported_by=None
) -> dict[str, int]:
    """Create or update sites and SKUs from parsed catalog rows, all or nothing; return what
    changed.

    `imported_by` is the person asking (from a screen), who needs to add and change sites and
    SKUs; None is an operator at the server's shell (`import_catalog`, `load_demo`).
    """
    if imported_by is not None and not imported_by.has_perms(CATALOG_IMPORT_PERMISSIONS):
        raise CatalogImportNotAllowed(imported_by.get_username())
    counts = {"sites_created": 0, "sites_updated": 0, "skus_created": 0, "skus_updated": 0}
    for row in sites:
        defaults = {"name": row.name}
        if row.timezone:
            defaults["timezone"] = row.timezone
        _, created = Site.objects.update_or_create(code=row.code, defaults=defaults)
        counts["sites_created" if created else "sites_updated"] += 1
    for row in skus:
        defaults = {"name": row.name, "unit_cost": row.unit_cost}
        if row.reorder_point is not None:
            defaults["reorder_point"] = row.reorder_point
        _, created = Sku.objects.update_or_create(code=row.code, defaults=defaults)
        counts["skus_created" if created else "skus_updated"] += 1
    return counts
