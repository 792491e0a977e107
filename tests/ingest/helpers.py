"""Builders for ingest tests: feed sources, events, batches."""

import hashlib
import hmac
import itertools
import json
import time
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from django.db import connection

from ingest.models import IngestBatch
from ingest.parsing import events_parse
from ingest.processing import batch_process
from ingest.receiving import batch_receive
from ingest.sources import feed_source_create

_sequence = itertools.count(1)
BASE_TIME = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def source_make(name: str | None = None, **options):
    """Return (source, token)."""
    issued = feed_source_create(name=name or f"feed-{next(_sequence)}", **options)
    return issued.source, issued.token


def signature_header(secret: str, body: bytes, *, t: int | None = None) -> str:
    """X-Signature as docs/signing.md says: t=<unix seconds>,sha256=<HMAC of "<t>.<body>">."""
    t = int(time.time()) if t is None else t
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},sha256={digest}"


def at(minutes: float) -> str:
    return (BASE_TIME + timedelta(minutes=minutes)).isoformat()


def event(type_: str, event_id: str | None = None, *, site: str = "north", minutes=0, **fields):
    return {
        "event_id": event_id or f"ev-{next(_sequence)}",
        "type": type_,
        "occurred_at": at(minutes),
        "site": site,
        **fields,
    }


def received(sku: str, qty: int, **fields):
    return event("stock.received", sku=sku, qty=qty, **fields)


def order_created(order_id: str, lines: dict[str, int], **fields):
    return event(
        "order.created",
        order_id=order_id,
        lines=[{"sku": sku, "qty": qty} for sku, qty in lines.items()],
        channel=fields.pop("channel", "web"),
        **fields,
    )


def order_dispatched(order_id: str, **fields):
    return event(
        "order.dispatched", order_id=order_id, courier_id=fields.pop("courier_id", "c-1"), **fields
    )


def order_delivered(order_id: str, **fields):
    return event(
        "order.delivered",
        order_id=order_id,
        courier_id=fields.pop("courier_id", "c-1"),
        shipping_cost=fields.pop("shipping_cost", "4.50"),
        accurate=fields.pop("accurate", True),
        **fields,
    )


def json_body(events: list) -> str:
    return json.dumps({"events": events})


def batch_apply(source, events: list) -> IngestBatch:
    """Store and process a JSON batch in this process (no queue): the worker's code path."""
    text = json_body(events)
    parsed = events_parse(body_format="json", text=text)
    batch = batch_receive(source=source, body_format="json", raw_body=text, accepted=len(parsed))
    batch_process(batch_id=batch.pk)
    batch.refresh_from_db()
    return batch


@contextmanager
def table_trigger(table: str, when: str, action: str, *, condition: str = "TRUE"):
    """A PostgreSQL trigger running `action` (PL/pgSQL) `when` ("BEFORE INSERT", ...) for each
    row of `table` where `condition` holds."""
    returned = "OLD" if "DELETE" in when else "NEW"
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION test_trigger() RETURNS trigger AS $$ BEGIN "
            f"IF {condition} THEN {action}; END IF; RETURN {returned}; END $$ "
            "LANGUAGE plpgsql"
        )
        cursor.execute(
            f"CREATE TRIGGER test_trigger {when} ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION test_trigger()"
        )
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TRIGGER IF EXISTS test_trigger ON {table}")
            cursor.execute("DROP FUNCTION IF EXISTS test_trigger()")


def key_insert_trigger(event_id: str, action: str):
    """A database trigger that runs `action` (PL/pgSQL) when `event_id`'s idempotency key is
    stored, at every attempt at the batch holding it."""
    return table_trigger(
        "ingest_processedevent", "BEFORE INSERT", action, condition=f"NEW.event_id = '{event_id}'"
    )


def poison_event(event_id: str):
    """Storing `event_id`'s key raises, as a bug or a broken constraint would."""
    return key_insert_trigger(event_id, "RAISE EXCEPTION 'poisoned event %', NEW.event_id")


def slow_event(event_id: str, seconds: float):
    """Storing `event_id`'s key takes `seconds`: its batch stays mid-transaction that long."""
    return key_insert_trigger(event_id, f"PERFORM pg_sleep({seconds})")
