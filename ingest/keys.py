"""Idempotency keys `(source, event_id)`: claimed in bulk, a key that exists makes a duplicate."""

from uuid import UUID

from django.db import connection
from django.db.models import Q

from core.db import pg_int_array, pg_text_array
from ingest.items import DUPLICATE, Item
from ingest.models import (
    ProcessedEvent,
)

KEY_INSERT_CHUNK = 1000


def keys_claim(items: list[Item]) -> None:
    """Insert the idempotency keys; an event whose key exists is a duplicate."""
    claimants: dict[tuple[int, str], Item] = {}
    for item in items:
        if item.outcome or item.held_id is not None:
            continue
        key = (item.source_id, item.event.event_id)
        if key in claimants:
            item.outcome = DUPLICATE  # the same event twice in one call
        else:
            claimants[key] = item
    if not claimants:
        return
    # Sorted, so that racing workers take the key locks in one order.
    rows = [(key[0], key[1], claimants[key].batch_id) for key in sorted(claimants)]
    inserted = _keys_insert(rows)
    for key, item in claimants.items():
        if key in inserted:
            item.keyed = True
        else:
            item.outcome = DUPLICATE


def _keys_insert(rows: list[tuple[int, str, UUID]]) -> set[tuple[int, str]]:
    """INSERT ... ON CONFLICT DO NOTHING the keys; return those that were new."""
    table = ProcessedEvent._meta.db_table
    conflict = "ON CONFLICT (source_id, event_id) DO NOTHING RETURNING source_id, event_id"
    inserted: set[tuple[int, str]] = set()
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Three array parameters rather than thousands of placeholders.
            source_ids, event_ids, batch_ids = zip(*rows, strict=True)
            batch_text = {batch_id: str(batch_id) for batch_id in set(batch_ids)}
            batch_ids = [batch_text[batch_id] for batch_id in batch_ids]
            cursor.execute(
                f"INSERT INTO {table} (source_id, event_id, batch_id) "  # noqa: S608
                f"SELECT * FROM unnest(%s::bigint[], %s::text[], %s::uuid[]) {conflict}",
                [pg_int_array(source_ids), pg_text_array(event_ids), pg_int_array(batch_ids)],
            )
            return set(cursor.fetchall())
        for start in range(0, len(rows), KEY_INSERT_CHUNK):
            chunk = rows[start : start + KEY_INSERT_CHUNK]
            placeholders = ", ".join(["(%s, %s, %s)"] * len(chunk))
            params = [
                value
                for source_id, event_id, batch_id in chunk
                for value in (source_id, event_id, batch_id.hex)
            ]
            # Only the table name and placeholders are interpolated; values go as parameters.
            cursor.execute(
                f"INSERT INTO {table} (source_id, event_id, batch_id) "  # noqa: S608
                f"VALUES {placeholders} {conflict}",
                params,
            )
            inserted.update(cursor.fetchall())
    return inserted


def keys_release(items: list[Item]) -> None:
    """Delete the keys of events rejected after claiming them: they may be sent again."""
    if not items:
        return
    condition = Q()
    for item in items:
        condition |= Q(source_id=item.source_id, event_id=item.event.event_id)
    ProcessedEvent.objects.filter(condition).delete()
    for item in items:
        item.keyed = False
