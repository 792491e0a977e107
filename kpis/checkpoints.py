"""Hourly stock checkpoints (`StockCheckpoint`): kept by every ledger write, rebuilt from the
ledger by `rebuild_kpis`.

A checkpoint of a pair at the hour boundary H holds the sums of its movements dated before H.
A write adds, for each pair and each hour it moved in (its end H): the row at H if missing,
starting from the pair's previous checkpoint (no movement lies between the two, or the row
would exist), then its deltas to every checkpoint of the pair at or after H. Movements in
time order touch one row per pair; a movement dated k active hours back touches k rows.
"""

import datetime as dt
import itertools
from collections import defaultdict
from collections.abc import Iterable

from django.db import connection
from django.db.models import Q

from core.db import datetime_param, pg_int_array
from kpis.buckets import bulk_insert
from kpis.models import StockCheckpoint
from kpis.units import instant
from ledger.models import Movement

CHECKPOINT_S = 3600
REBUILD_CHUNK = 20000


def checkpoint_after(moment: dt.datetime) -> int:
    """Epoch second of the checkpoint that first includes a movement at `moment`: the end of
    the hour holding it."""
    return int(moment.timestamp() // CHECKPOINT_S) * CHECKPOINT_S + CHECKPOINT_S


def checkpoint_at_or_before(moment: dt.datetime) -> int:
    """Epoch second of the latest hour boundary at or before `moment`."""
    return int(moment.timestamp() // CHECKPOINT_S) * CHECKPOINT_S


def checkpoints_add(movements: Iterable[tuple[int, int, dt.datetime, int, int]]) -> None:
    """Fold movements `(site_id, sku_id, occurred_at, on_hand_delta, reserved_delta)` into the
    checkpoints. Caller is in the ledger's writing transaction and holds the level locks of
    these pairs (so no other writer touches their checkpoints meanwhile)."""
    deltas: dict[tuple[int, int, int], list[int]] = defaultdict(lambda: [0, 0])
    for site_id, sku_id, occurred_at, on_hand_delta, reserved_delta in movements:
        row = deltas[(site_id, sku_id, checkpoint_after(occurred_at))]
        row[0] += on_hand_delta
        row[1] += reserved_delta
    if not deltas:
        return
    items = sorted(deltas.items())  # a fixed lock order
    table = StockCheckpoint._meta.db_table
    if connection.vendor == "postgresql":
        sites, skus, ends = (
            pg_int_array(column) for column in zip(*(k for k, _ in items), strict=True)
        )
        on_hands = pg_int_array(on_hand for _, (on_hand, _) in items)
        reserveds = pg_int_array(reserved for _, (_, reserved) in items)
        with connection.cursor() as cursor:
            # A new row starts from the pair's previous checkpoint as it stood before this
            # statement (rows inserted by it are not visible to it: the same value, as no
            # movement lies between them before this write); then the deltas are added.
            cursor.execute(
                f"INSERT INTO {table} (site_id, sku_id, at, on_hand, reserved) "  # noqa: S608
                "SELECT u.site_id, u.sku_id, to_timestamp(u.at), "
                "COALESCE(previous.on_hand, 0), COALESCE(previous.reserved, 0) "
                "FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[]) AS u (site_id, sku_id, at) "
                "LEFT JOIN LATERAL (SELECT p.on_hand, p.reserved FROM "
                f"{table} p WHERE p.site_id = u.site_id AND p.sku_id = u.sku_id "
                "AND p.at < to_timestamp(u.at) ORDER BY p.at DESC LIMIT 1) previous ON true "
                "ORDER BY 1, 2, 3 ON CONFLICT (site_id, sku_id, at) DO NOTHING; "
                f"UPDATE {table} SET on_hand = {table}.on_hand + added.on_hand, "
                f"reserved = {table}.reserved + added.reserved FROM ("
                "SELECT c.id, SUM(u.on_hand) AS on_hand, SUM(u.reserved) AS reserved "
                f"FROM {table} c JOIN unnest(%s::bigint[], %s::bigint[], %s::bigint[], "
                "%s::bigint[], %s::bigint[]) AS u (site_id, sku_id, at, on_hand, reserved) "
                "ON c.site_id = u.site_id AND c.sku_id = u.sku_id AND c.at >= to_timestamp(u.at) "
                f"GROUP BY c.id) added WHERE {table}.id = added.id",
                [sites, skus, ends, sites, skus, ends, on_hands, reserveds],
            )
        return
    # SQLite (one writer at a time): two statements per pair and hour, in time order.
    with connection.cursor() as cursor:
        for (site_id, sku_id, end), (on_hand, reserved) in items:
            at = datetime_param(instant(end))
            cursor.execute(
                f"INSERT INTO {table} (site_id, sku_id, at, on_hand, reserved) "  # noqa: S608
                "SELECT %s, %s, %s, COALESCE((SELECT on_hand FROM "
                f"{table} WHERE site_id = %s AND sku_id = %s AND at < %s "
                "ORDER BY at DESC LIMIT 1), 0), COALESCE((SELECT reserved FROM "
                f"{table} WHERE site_id = %s AND sku_id = %s AND at < %s "
                "ORDER BY at DESC LIMIT 1), 0) "
                "ON CONFLICT (site_id, sku_id, at) DO NOTHING",
                [site_id, sku_id, at, *([site_id, sku_id, at] * 2)],
            )
            cursor.execute(
                f"UPDATE {table} SET on_hand = on_hand + %s, reserved = reserved + %s "  # noqa: S608
                "WHERE site_id = %s AND sku_id = %s AND at >= %s",
                [on_hand, reserved, site_id, sku_id, at],
            )


def checkpoints_rebuild(scope: Q) -> int:
    """Write the checkpoints of the pairs in `scope` (a Q on site_id) again from the ledger.
    Caller holds a transaction that keeps ledger writers of the scope out (the rebuild locks
    the rollup tables, checkpoints included). Returns the rows written."""
    StockCheckpoint.objects.filter(scope).delete()
    moves = (
        Movement.objects.filter(scope)
        .order_by("site_id", "sku_id", "occurred_at")
        .values_list("site_id", "sku_id", "occurred_at", "on_hand_delta", "reserved_delta")
        .iterator(chunk_size=REBUILD_CHUNK)
    )

    # Gathered before writing: COPY cannot run on the connection while the movements'
    # server-side cursor is open. One row per pair and active hour, fewer than movements.
    rows = []
    for (site_id, sku_id), pair_moves in itertools.groupby(moves, key=lambda m: m[:2]):
        on_hand = reserved = 0
        for end, hour_moves in itertools.groupby(pair_moves, key=lambda m: checkpoint_after(m[2])):
            for *_, on_hand_delta, reserved_delta in hour_moves:
                on_hand += on_hand_delta
                reserved += reserved_delta
            rows.append([site_id, sku_id, instant(end), on_hand, reserved])
    bulk_insert(StockCheckpoint, ["site_id", "sku_id", "at", "on_hand", "reserved"], rows)
    return len(rows)
