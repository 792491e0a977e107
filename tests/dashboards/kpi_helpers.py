"""Builders of KPI facts for tests: ledger movements and ingest facts, written for real."""

import datetime as dt
from decimal import Decimal

from django.db.models import Sum
from django.utils import timezone

from kpis.models import ALL_SITES, StockStatus, StockTroubleCount
from kpis.rollups import DeliveryFact, OrderLineFact, SnapshotFact, rollups_facts_record
from kpis.units import SPANS, TOTAL_SPAN, minute_of
from ledger.models import MovementKind
from ledger.services import MovementRequest, movements_record


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
    channel: str = "",
    courier: str = "",
):
    rollups_facts_record(
        deliveries=[
            DeliveryFact(
                site_id=site.id,
                occurred_at=at,
                accurate=accurate,
                shipping_cost=Decimal(cost),
                order_created_at=created_at,
                channel=channel,
                courier_id=courier,
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


def counters() -> dict[tuple[int, int, int], tuple[int, int, int]]:
    """The counter rows summed over the writers' shards, zero rows left out:
    (site, span, start epoch s) -> (negative, below, stockouts)."""
    rows = (
        StockTroubleCount.objects.values("site_id", "span_s", "start")
        .annotate(
            negative=Sum("negative_stock"), below=Sum("below_reorder_point"), out=Sum("stockouts")
        )
        .order_by()
    )
    return {
        (row["site_id"], row["span_s"], int(row["start"].timestamp())): (
            row["negative"],
            row["below"],
            row["out"],
        )
        for row in rows
        if row["negative"] or row["below"] or row["out"]
    }


def counted_from_status() -> dict[tuple[int, int, int], tuple[int, int, int]]:
    """What the counters should hold, counted here pair by pair from the stock status."""
    expected: dict[tuple[int, int, int], list[int]] = {}
    for state in StockStatus.objects.all():
        for scope in (state.site_id, ALL_SITES):
            if state.on_hand < 0:
                expected.setdefault((scope, TOTAL_SPAN, 0), [0, 0, 0])[0] += 1
            point = state.reorder_point
            if state.has_level and point is not None and state.available < point:
                expected.setdefault((scope, TOTAL_SPAN, 0), [0, 0, 0])[1] += 1
            if state.available <= 0 and state.last_order_line_at is not None:
                minute = minute_of(state.last_order_line_at)
                for span in SPANS:
                    key = (scope, span, minute - minute % span)
                    expected.setdefault(key, [0, 0, 0])[2] += 1
    return {key: tuple(values) for key, values in expected.items()}
