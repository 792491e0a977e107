"""Channel and courier of the deliveries recorded before they were kept (`DeliveryRecord`
with neither), from what ingest still holds: run by `rebuild_kpis` before it folds the
deliveries into the breakdowns (registered in `IngestConfig.ready`).

- **Channel**: a delivery is applied only to a known order, and its record keeps the order's
  site and creation instant. The order (`Order`, kept for good) whose site and
  `created_occurred_at` are those, and which is delivered, gives its `channel`. Two delivered
  orders of a site created at the same microsecond with different channels leave it empty.
- **Courier**: only the `order.delivered` event carried it. Its batch's raw body is kept
  `INGEST_BODY_RETENTION_DAYS` (30) after the batch arrived; each `order.delivered` event of a
  kept body names its order, courier and instant, which find the record (site and creation
  instant of the order, the delivery's `occurred_at`). A record that two events with different
  couriers would match keeps none. Once a body is dropped, its couriers are gone for good:
  those deliveries stay under the key `""` (docs/breakdowns.md).
"""

import datetime as dt
from collections import defaultdict

from django.db import transaction
from pydantic import ValidationError

from ingest.models import IngestBatch, Order
from ingest.parsing import BodyError, events_parse
from ingest.schemas import OrderDelivered
from kpis.models import DeliveryRecord

CHUNK = 2000
_AMBIGUOUS = object()

# (site_id, order created at) -> channel; (site_id, created at, delivered at) -> courier.
Key = tuple[int, dt.datetime]


def _set(found: dict, key, value) -> None:
    if found.get(key, value) != value:
        value = _AMBIGUOUS
    found[key] = value


def _orders_by_key(records) -> dict:
    """(site, created at) -> (channel, order_id) of the delivered orders these records may be."""
    wanted = {(site_id, created) for _, site_id, created, _ in records if created is not None}
    if not wanted:
        return {}
    found: dict = {}
    orders = Order.objects.filter(
        delivered=True,
        site_id__in={site_id for site_id, _ in wanted},
        created_occurred_at__in={created for _, created in wanted},
    ).values_list("site_id", "created_occurred_at", "channel", "order_id")
    for site_id, created, channel, order_id in orders.iterator(chunk_size=CHUNK):
        if (site_id, created) in wanted:
            _set(found, (site_id, created), (channel, order_id))
    return found


def _couriers_by_order(*, received_from: dt.datetime) -> dict:
    """(order_id, delivered at) -> courier, from every `order.delivered` of a kept body."""
    found: dict = {}
    bodies = IngestBatch.objects.filter(
        body_dropped_at__isnull=True, received_at__gte=received_from
    ).exclude(raw_body="")
    for body_format, text in bodies.values_list("body_format", "raw_body").iterator(chunk_size=100):
        try:
            events = events_parse(body_format=body_format, text=text)
        except BodyError:
            continue
        for raw in events:
            if not isinstance(raw, dict) or raw.get("type") != "order.delivered":
                continue
            try:
                event = OrderDelivered.model_validate(raw)
            except ValidationError:
                continue
            _set(found, (event.order_id, event.occurred_at), event.courier_id)
    return found


def delivery_keys_backfill(*, site_id: int | None = None) -> dict[str, int]:
    """Fill the channel and courier of the records (of one site, or all) that have neither,
    where the stored orders and kept batch bodies tell them. Returns how many records were
    looked at and how many got a channel and a courier."""
    scope = {} if site_id is None else {"site_id": site_id}
    # A real courier is never empty, so these were recorded before couriers were kept (or
    # looked at here before without success: their order has no channel and the body is gone).
    records = list(
        DeliveryRecord.objects.filter(courier_id="", channel="", **scope).values_list(
            "id", "site_id", "order_created_at", "occurred_at"
        )
    )
    counts = {"looked_at": len(records), "channels": 0, "couriers": 0}
    if not records:
        return counts
    orders = _orders_by_key(records)
    # An event reaches us after it happened: no batch received a day (clock skew) before the
    # earliest of these deliveries can hold one of them.
    earliest = min(delivered for *_, delivered in records) - dt.timedelta(days=1)
    couriers = _couriers_by_order(received_from=earliest) if orders else {}
    updates: defaultdict[tuple[str, str], list[int]] = defaultdict(list)
    for record_id, site_id, created, delivered in records:
        order = orders.get((site_id, created))
        if order is None or order is _AMBIGUOUS:
            continue
        channel, order_id = order
        courier = couriers.get((order_id, delivered), "")
        courier = "" if courier is _AMBIGUOUS else courier
        if channel or courier:
            updates[(channel, courier)].append(record_id)
    with transaction.atomic():
        for (channel, courier), ids in updates.items():
            for first in range(0, len(ids), CHUNK):
                DeliveryRecord.objects.filter(
                    id__in=ids[first : first + CHUNK], courier_id=""
                ).update(channel=channel, courier_id=courier)
            counts["channels"] += len(ids) if channel else 0
            counts["couriers"] += len(ids) if courier else 0
    return counts
