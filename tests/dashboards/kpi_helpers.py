"""Builders of KPI facts for tests: ledger movements and ingest facts, written for real."""

import datetime as dt
from decimal import Decimal

from django.utils import timezone

from dashboards.rollups import DeliveryFact, OrderLineFact, SnapshotFact, rollups_facts_record
from inventory_ops.models import MovementKind
from inventory_ops.services import MovementRequest, movements_record


def now_mid_minute() -> dt.datetime:
    """A `now` in the middle of a minute, so windows have partial minutes at both ends."""
    return timezone.now().replace(second=30, microsecond=250000)


def move(site, sku, kind: str, at: dt.datetime, on_hand: int = 0, reserved: int = 0):
    return MovementRequest(
        site=site.code,
        sku=sku.code,
        kind=kind,
        occurred_at=at,
        on_hand_delta=on_hand,
        reserved_delta=reserved,
    )


def count(site, sku, at: dt.datetime, counted: int):
    return MovementRequest(
        site=site.code, sku=sku.code, kind=MovementKind.COUNTED, occurred_at=at, counted_qty=counted
    )


def record(*requests):
    return movements_record(requests=list(requests))


def receive(site, sku, qty: int, at: dt.datetime):
    return record(move(site, sku, MovementKind.RECEIVED, at, on_hand=qty))


def ship(site, sku, qty: int, reserved_at: dt.datetime, dispatched_at: dt.datetime):
    """An order's reservation then dispatch of `qty`."""
    record(
        move(site, sku, MovementKind.ORDER_RESERVED, reserved_at, reserved=qty),
        move(site, sku, MovementKind.ORDER_DISPATCHED, dispatched_at, on_hand=-qty, reserved=-qty),
    )


def deliver(
    site,
    at: dt.datetime,
    *,
    accurate: bool = True,
    cost: str = "5.00",
    created_at: dt.datetime | None = None,
):
    rollups_facts_record(
        deliveries=[
            DeliveryFact(
                site_id=site.id,
                occurred_at=at,
                accurate=accurate,
                shipping_cost=Decimal(cost),
                order_created_at=created_at,
            )
        ]
    )


def order_line(site, sku, at: dt.datetime, qty: int = 1, order_id: str = ""):
    rollups_facts_record(
        order_lines=[
            OrderLineFact(
                site_id=site.id, sku_id=sku.id, occurred_at=at, qty=qty, order_id=order_id
            )
        ]
    )


def snapshot(site, at: dt.datetime, lines: dict):
    rollups_facts_record(
        snapshots=[
            SnapshotFact(
                site_id=site.id, occurred_at=at, lines={sku.id: qty for sku, qty in lines.items()}
            )
        ]
    )
