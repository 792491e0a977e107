"""Planning order events against the orders, locked in key order; an event whose order is not
known yet is held. Also where snapshots sit among the events.
"""

import bisect
import dataclasses
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from django.db import connection

from core.db import copy_rows
from ingest.items import APPLIED, HELD, Item, item_from_held
from ingest.models import (
    HeldEvent,
    Order,
    OrderState,
    RejectionCode,
)
from ingest.schemas import (
    ORDER_EVENT_TYPES,
)
from ingest.validation import catalog_resolve, events_validate, one_of
from kpis.rollups import DeliveryFact, OrderLineFact, SnapshotFact
from ledger.models import MovementCause, MovementKind
from ledger.services import AppliedMovement, MovementRequest

# Order events of one order applied in this order when they were waiting for it.
ORDER_EVENT_RANK = {
    "order.created": 0,
    "order.dispatched": 1,
    "order.delivered": 2,
    "order.returned": 3,
    "order.cancelled": 4,
}


@dataclass(slots=True, eq=False)
class _OrderRecord:
    """An order as the plan sees it (a model instance per order costs too much per batch).

    Field names match ORDER_COLUMNS; `pk` is None for an order this call creates.
    """

    pk: int | None
    order_id: str
    site_id: int
    source_id: int
    channel: str
    created_occurred_at: datetime
    lines: list
    state: str
    delivered: bool


class OrderPlan:
    """Turn the accepted events into movement requests and KPI facts, in arrival order."""

    def __init__(self, *, items, site_ids, sku_ids):
        self.items = items
        self.site_ids = site_ids
        self.sku_ids = sku_ids
        self.requests: list[MovementRequest] = []
        self.deliveries: list[DeliveryFact] = []
        self.order_lines: list[OrderLineFact] = []
        self.snapshots: list[SnapshotFact] = []
        self.site_codes: set[str] = set()
        self.orders: dict[str, _OrderRecord] = {}
        self.site_code_by_id: dict[int, str] = {pk: code for code, pk in site_ids.items()}
        self.new_orders: list[_OrderRecord] = []
        self.changed_orders: dict[str, _OrderRecord] = {}
        self.released: list[Item] = []  # held events taken in because their order appears
        # Position in `requests` at which each snapshot was applied: the stock it is compared
        # with is the one the movements before it left.
        self.snapshot_positions: list[int] = []

    def run(self) -> None:
        live = [item for item in self.items if not item.outcome]
        self._orders_lock(live)
        waiting: dict[str, list[Item]] = defaultdict(list)
        for item in self._held_for_new_orders(live):
            waiting[item.event.order_id].append(item)
        orders, apply = self.orders, self._apply
        for item in live:
            event = item.event
            kind = event.type
            if kind in _ORDER_FOLLOWER_TYPES and event.order_id not in orders:
                waiting[event.order_id].append(item)
                continue
            apply(item)
            if kind == "order.created" and item.outcome == APPLIED and waiting:
                followers = waiting.pop(event.order_id, None)
                if followers:
                    followers.sort(
                        key=lambda f: (f.event.occurred_at, ORDER_EVENT_RANK[f.event.type])
                    )
                    for follower in followers:
                        apply(follower)
        for followers in waiting.values():
            for item in followers:
                # Released held events whose order is still missing stay held as they are.
                if item.held_id is None:
                    item.outcome = HELD

    def _orders_lock(self, live: list[Item]) -> None:
        order_ids = sorted(
            {item.event.order_id for item in live if item.event.type in ORDER_EVENT_TYPES}
        )
        if not order_ids:
            return
        locked = (
            Order.objects.select_for_update(of=("self",))
            .filter(one_of(Order, "order_id", order_ids, text=True))
            .order_by("pk")
            .values_list("pk", *ORDER_COLUMNS, "site__code")
        )
        for pk, *columns, site_code in locked:
            order = _OrderRecord(pk, *columns)
            self.orders[order.order_id] = order
            self.site_code_by_id[order.site_id] = site_code

    def _held_for_new_orders(self, live: list[Item]) -> list[Item]:
        """Load the held events of the orders this call creates, to apply right after them."""
        new_order_ids = {
            item.event.order_id
            for item in live
            if item.event.type == "order.created" and item.event.order_id not in self.orders
        }
        if not new_order_ids:
            return []
        held = list(
            # of=self: the source rows are shared by every worker of the source.
            HeldEvent.objects.select_for_update(of=("self",))
            .select_related("source")
            .filter(one_of(HeldEvent, "order_id", sorted(new_order_ids), text=True))
            .order_by("pk")
        )
        released = [item_from_held(row) for row in held]
        events_validate(released)
        site_ids, sku_ids = catalog_resolve(released)
        self.site_ids.update(site_ids)
        self.sku_ids.update(sku_ids)
        self.site_code_by_id.update({pk: code for code, pk in site_ids.items()})
        self.released.extend(released)
        return [item for item in released if not item.outcome]

    # The handlers append their MovementRequests themselves, with the event's `cause_ref`
    # built once (planning is per-event Python: bench/README.md "Per-event Python cost").

    def _apply(self, item: Item) -> None:
        event = item.event
        if event.type in _ORDER_FOLLOWER_TYPES and not self._site_agrees(item, event):
            return
        OrderPlan.HANDLERS[event.type](self, item, event)
        if not item.outcome:
            item.outcome = APPLIED

    def _site_agrees(self, item: Item, event) -> bool:
        """Reject an event of a known order that names another site than the order's.

        Its source may differ (a shop creates, a courier app dispatches); its site may not:
        stock would move at the order's site while the producer meant another one.
        """
        _, site = self._order(event)
        if event.site == site:
            return True
        item.reject(
            RejectionCode.WRONG_SITE,
            f"site: order {event.order_id!r} is at site {site!r}, not {event.site!r}",
        )
        return False

    def _order(self, event) -> tuple[_OrderRecord, str]:
        order = self.orders[event.order_id]
        return order, self.site_code_by_id[order.site_id]

    def _order_changed(self, order: _OrderRecord) -> None:
        if order.pk is not None:
            self.changed_orders[order.order_id] = order

    def _apply_order_created(self, item, event) -> None:
        if event.order_id in self.orders:
            item.reject(
                RejectionCode.ORDER_STATE, f"order_id: order {event.order_id!r} already exists"
            )
            return
        site, occurred_at, order_id = event.site, event.occurred_at, event.order_id
        site_id = self.site_ids[site]
        cause_ref = f"{item.source_name}:{event.event_id}"
        lines = []
        append_request, append_line, sku_ids = (
            self.requests.append,
            self.order_lines.append,
            self.sku_ids,
        )
        for line in event.lines:
            sku, qty = line.sku, line.qty
            lines.append([sku, qty])
            append_request(
                MovementRequest(
                    site=site,
                    sku=sku,
                    kind=_RESERVED,
                    occurred_at=occurred_at,
                    reserved_delta=qty,
                    cause=_FEED_EVENT,
                    cause_ref=cause_ref,
                )
            )
            append_line(
                OrderLineFact(
                    site_id=site_id,
                    sku_id=sku_ids[sku],
                    occurred_at=occurred_at,
                    qty=qty,
                    order_id=order_id,
                )
            )
        order = _OrderRecord(
            pk=None,
            order_id=order_id,
            site_id=site_id,
            source_id=item.source_id,
            channel=event.channel,
            created_occurred_at=occurred_at,
            lines=lines,
            state=OrderState.OPEN,
            delivered=False,
        )
        self.orders[order_id] = order
        self.new_orders.append(order)
        self.site_codes.add(site)

    def _apply_order_dispatched(self, item, event) -> None:
        order, site = self._order(event)
        if order.state != OrderState.OPEN:
            item.reject(
                RejectionCode.ORDER_STATE,
                f"order_id: order {event.order_id!r} is already {order.state}",
            )
            return
        self._lines_request(item, event, site, order.lines, _DISPATCHED, on_hand=-1, reserved=-1)
        order.state = OrderState.DISPATCHED
        self._order_changed(order)

    def _apply_order_delivered(self, item, event) -> None:
        order, site = self._order(event)
        if order.delivered:
            item.reject(
                RejectionCode.ORDER_STATE,
                f"order_id: order {event.order_id!r} is already delivered",
            )
            return
        order.delivered = True
        self._order_changed(order)
        self.deliveries.append(
            DeliveryFact(
                site_id=order.site_id,
                occurred_at=event.occurred_at,
                accurate=event.accurate,
                shipping_cost=event.shipping_cost,
                order_created_at=order.created_occurred_at,
                channel=order.channel,
                courier_id=event.courier_id,
            )
        )
        self.site_codes.add(site)

    def _apply_order_cancelled(self, item, event) -> None:
        order, site = self._order(event)
        if order.state != OrderState.OPEN:
            return  # nothing is reserved any more: releasing nothing is still applied
        self._lines_request(item, event, site, order.lines, _RELEASED, on_hand=0, reserved=-1)
        order.state = OrderState.CANCELLED
        self._order_changed(order)

    def _apply_order_returned(self, item, event) -> None:
        _, site = self._order(event)
        lines = [(line.sku, line.qty) for line in event.lines]
        self._lines_request(item, event, site, lines, _RETURNED, on_hand=1, reserved=0)

    def _lines_request(self, item, event, site, lines, kind, *, on_hand, reserved) -> None:
        """One movement per (sku, qty) line at `site`: deltas are qty times the signs given."""
        cause_ref, occurred_at = f"{item.source_name}:{event.event_id}", event.occurred_at
        self.requests.extend(
            MovementRequest(
                site=site,
                sku=sku,
                kind=kind,
                occurred_at=occurred_at,
                on_hand_delta=on_hand * qty,
                reserved_delta=reserved * qty,
                cause=_FEED_EVENT,
                cause_ref=cause_ref,
            )
            for sku, qty in lines
        )
        if lines:
            self.site_codes.add(site)

    def _apply_stock_received(self, item, event) -> None:
        self._stock_request(item, event, _RECEIVED, on_hand_delta=event.qty)

    def _apply_stock_transferred(self, item, event) -> None:
        self._stock_request(item, event, _TRANSFER_OUT, on_hand_delta=-event.qty)
        self._stock_request(item, event, _TRANSFER_IN, site=event.to_site, on_hand_delta=event.qty)

    def _apply_stock_adjusted(self, item, event) -> None:
        self._stock_request(item, event, _ADJUSTED, on_hand_delta=event.qty_delta)

    def _apply_stock_counted(self, item, event) -> None:
        self._stock_request(item, event, _COUNTED, counted_qty=event.counted_qty)

    def _stock_request(self, item, event, kind, *, site=None, **amount) -> None:
        """The one movement of a stock.* event on one SKU (at `site`, default the event's)."""
        site = site or event.site
        self.requests.append(
            MovementRequest(
                site=site,
                sku=event.sku,
                kind=kind,
                occurred_at=event.occurred_at,
                cause=_FEED_EVENT,
                cause_ref=f"{item.source_name}:{event.event_id}",
                **amount,
            )
        )
        self.site_codes.add(site)

    def _apply_stock_snapshot(self, item, event) -> None:
        lines: dict[int, int] = defaultdict(int)
        for line in event.lines:
            lines[self.sku_ids[line.sku]] += line.qty
        self.snapshots.append(
            SnapshotFact(
                site_id=self.site_ids[event.site], occurred_at=event.occurred_at, lines=dict(lines)
            )
        )
        self.snapshot_positions.append(len(self.requests))
        self.site_codes.add(event.site)

    # Plain functions, not bound methods on the instance: a plan holding its own bound
    # methods is a reference cycle, and its tens of thousands of requests and facts would wait
    # for the cyclic collector instead of being freed when the group is done.
    HANDLERS: ClassVar[dict[str, Callable]] = {
        "order.created": _apply_order_created,
        "order.dispatched": _apply_order_dispatched,
        "order.delivered": _apply_order_delivered,
        "order.cancelled": _apply_order_cancelled,
        "order.returned": _apply_order_returned,
        "stock.received": _apply_stock_received,
        "stock.transferred": _apply_stock_transferred,
        "stock.adjusted": _apply_stock_adjusted,
        "stock.counted": _apply_stock_counted,
        "stock.snapshot": _apply_stock_snapshot,
    }

    def orders_save(self) -> None:
        if self.new_orders:
            _orders_insert(self.new_orders)
        by_state: dict[tuple[str, bool], list[int]] = defaultdict(list)
        for order in self.changed_orders.values():
            by_state[(order.state, order.delivered)].append(order.pk)
        for (state, delivered), pks in sorted(by_state.items()):
            Order.objects.filter(one_of(Order, "id", pks, text=False)).update(
                state=state, delivered=delivered
            )


def snapshots_at_their_position(
    *,
    snapshots: Sequence[SnapshotFact],
    positions: Sequence[int],
    applied: Sequence[AppliedMovement],
) -> list[SnapshotFact]:
    """Give each snapshot the on_hand it is compared with: the stock at its place among the
    events, i.e. on_hand before the call plus the deltas of the movements applied before it.

    `positions[i]` is the number of movement requests made before snapshot i (in the order the
    events were applied, across the batches of a group); `applied` answers those requests, in
    order. Pairs the call does not move are left out: the ledger's on_hand is theirs.
    """
    wanted = {(fact.site_id, sku_id) for fact in snapshots for sku_id in fact.lines}
    history: dict[tuple[int, int], list[tuple[int, int, int]]] = defaultdict(list)
    for position, movement in enumerate(applied):
        pair = (movement.site_id, movement.sku_id)
        if pair in wanted:
            history[pair].append((position, movement.on_hand_before, movement.on_hand_after))
    facts = []
    for fact, snapshot_position in zip(snapshots, positions, strict=True):
        on_hand = {}
        for sku_id in fact.lines:
            moves = history.get((fact.site_id, sku_id))
            if moves:
                # The first movement after the snapshot found what it saw; else the last before.
                later = bisect.bisect_left(moves, (snapshot_position,))
                on_hand[sku_id] = moves[later][1] if later < len(moves) else moves[-1][2]
        facts.append(dataclasses.replace(fact, on_hand=on_hand))
    return facts


# The kinds and cause the plan writes (looked up once, not per movement).
_FEED_EVENT = MovementCause.FEED_EVENT
_RESERVED, _DISPATCHED = MovementKind.ORDER_RESERVED, MovementKind.ORDER_DISPATCHED
_RELEASED, _RETURNED = MovementKind.ORDER_RELEASED, MovementKind.ORDER_RETURNED
_RECEIVED, _ADJUSTED, _COUNTED = MovementKind.RECEIVED, MovementKind.ADJUSTED, MovementKind.COUNTED
_TRANSFER_OUT, _TRANSFER_IN = MovementKind.TRANSFER_OUT, MovementKind.TRANSFER_IN
# Order events that need their order to exist (held until it does).
_ORDER_FOLLOWER_TYPES = ORDER_EVENT_TYPES - {"order.created"}


ORDER_COLUMNS = (
    "order_id",
    "site_id",
    "source_id",
    "channel",
    "created_occurred_at",
    "lines",
    "state",
    "delivered",
)


def _orders_insert(orders: list[_OrderRecord]) -> None:
    """Insert new orders: COPY on PostgreSQL (hundreds per batch), the ORM elsewhere."""
    rows = [
        (
            order.order_id,
            order.site_id,
            order.source_id,
            order.channel,
            order.created_occurred_at,
            order.lines,
            order.state,
            order.delivered,
        )
        for order in orders
    ]  # in ORDER_COLUMNS order
    if connection.vendor != "postgresql":
        Order.objects.bulk_create(
            [Order(**dict(zip(ORDER_COLUMNS, row, strict=True))) for row in rows],
            batch_size=1000,
        )
        return
    copy_rows(Order, ORDER_COLUMNS, rows)
