"""`StockStatus`, the KPI engine's copy of each stock level, and the per-site trouble counts."""

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence

from django.db import connection, transaction

from core.db import datetime_param, pg_int_array, pg_timestamp_array
from kpis.buckets import upsert_add, writer_shard
from kpis.models import (
    ALL_SITES,
    StockStatus,
    StockTroubleCount,
)
from kpis.units import SPANS, TOTAL_SPAN, UPSERT_BATCH, minute_of
from ledger.models import (
    SiteReorderPoint,
    Sku,
    StockLevel,
)


def reorder_points(pairs: set[tuple[int, int]]) -> dict[tuple[int, int], int | None]:
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


def trouble_of_state(state: tuple) -> Trouble:
    """What a `StockStatus` state (`STATUS_STATE_COLUMNS`) counts as. `_trouble_sql` says the
    same in SQL."""
    has_level, on_hand, available, reorder_point, last_order_line_at = state
    return (
        on_hand < 0,
        bool(has_level and reorder_point is not None and available < reorder_point),
        last_order_line_at if available <= 0 else None,
    )


def _trouble_sql(row: str) -> str:
    """What a row counts as (`trouble_of_state`), in SQL: the values of (was_negative,
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
        changes.append((site_id, old, trouble_of_state(state)))
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
            trouble_of_state(before[pair]) if pair in before else NO_TROUBLE,
            trouble_of_state(state),
        )
        for pair, state in after.items()
    ]


def trouble_add(counts, site_id: int, trouble: Trouble, sign: int) -> None:
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
            trouble_add(counts, site_id, old, -1)
            trouble_add(counts, site_id, new, 1)
    rows = [(key, values) for key, values in counts.items() if any(values)]
    if not rows:
        return
    shard = writer_shard()
    upsert_add(
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


def stock_status_upsert(levels: dict[tuple[int, int], tuple[int, int]]) -> None:
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
    points = reorder_points(set(levels))
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


def stock_status_demand(latest: dict[tuple[int, int], dt.datetime]) -> None:
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
            params.extend([site_id, sku_id, False, 0, 0, datetime_param(moment)])
        sql = (
            f"INSERT INTO {table} (site_id, sku_id, has_level, on_hand, available, "  # noqa: S608
            f"last_order_line_at) VALUES "
            f"{', '.join(['(%s, %s, %s, %s, %s, %s)'] * len(chunk))} {conflict} {newer}"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
    _trouble_counts_add(_state_changes(before, after))


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
        for (site, _sku), point in reorder_points(pairs).items():
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
