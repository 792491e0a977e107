"""An order's events sent twice under different event ids: the second is refused, and the
stock and the KPI facts count the order once (a re-sent event id is a duplicate instead)."""

import pytest

from ingest.models import DeadLetter, Order, OrderState
from kpis.models import DeliveryRecord
from ledger.models import Movement, MovementKind, StockLevel
from tests.builders import site_make, sku_make
from tests.ingest.helpers import (
    batch_apply,
    order_created,
    order_delivered,
    order_dispatched,
    received,
    source_make,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def stocked():
    site_make("north")
    sku_make("A")
    source, _ = source_make()
    batch_apply(source, [received("A", 10)])
    return source


def level() -> tuple[int, int]:
    row = StockLevel.objects.get(site__code="north", sku__code="A")
    return row.on_hand, row.reserved


def reasons(batch) -> list[str]:
    return list(DeadLetter.objects.filter(batch=batch).values_list("reason", flat=True))


@pytest.mark.parametrize("same_batch", [True, False], ids=["same batch", "later batch"])
def test_a_second_order_created_is_rejected_and_reserves_nothing(stocked, same_batch):
    # given an order created once
    first, again = order_created("o-1", {"A": 3}), order_created("o-1", {"A": 3})

    # when it is created again under another event id, in the same batch or a later one
    if same_batch:
        batch = batch_apply(stocked, [first, again])
    else:
        batch_apply(stocked, [first])
        batch = batch_apply(stocked, [again])

    # then the second is rejected, saying why, and the stock is reserved once
    assert batch.rejected == 1
    assert reasons(batch) == ["order_id: order 'o-1' already exists"]
    assert level() == (10, 3)
    assert Movement.objects.filter(kind=MovementKind.ORDER_RESERVED).count() == 1
    assert Order.objects.count() == 1


@pytest.mark.parametrize("same_batch", [True, False], ids=["same batch", "later batch"])
def test_a_second_dispatch_is_rejected_and_moves_no_stock(stocked, same_batch):
    # given an order created and dispatched
    batch_apply(stocked, [order_created("o-1", {"A": 3})])
    dispatched, again = order_dispatched("o-1", minutes=5), order_dispatched("o-1", minutes=6)

    # when a second dispatch arrives under another event id
    if same_batch:
        batch = batch_apply(stocked, [dispatched, again])
    else:
        batch_apply(stocked, [dispatched])
        batch = batch_apply(stocked, [again])

    # then it is rejected, and the stock left the shelf once
    assert batch.rejected == 1
    assert reasons(batch) == ["order_id: order 'o-1' is already dispatched"]
    assert level() == (7, 0)
    assert Movement.objects.filter(kind=MovementKind.ORDER_DISPATCHED).count() == 1
    assert Order.objects.get().state == OrderState.DISPATCHED


@pytest.mark.parametrize("same_batch", [True, False], ids=["same batch", "later batch"])
def test_a_second_delivery_is_rejected_and_counts_once(stocked, same_batch):
    # given an order created and dispatched
    batch_apply(stocked, [order_created("o-1", {"A": 3}), order_dispatched("o-1", minutes=5)])
    delivered, again = order_delivered("o-1", minutes=30), order_delivered("o-1", minutes=31)

    # when a second delivery arrives under another event id
    if same_batch:
        batch = batch_apply(stocked, [delivered, again])
    else:
        batch_apply(stocked, [delivered])
        batch = batch_apply(stocked, [again])

    # then it is rejected, and the KPIs see one delivery (cost, accuracy, time)
    assert batch.rejected == 1
    assert reasons(batch) == ["order_id: order 'o-1' is already delivered"]
    assert DeliveryRecord.objects.count() == 1
    assert level() == (7, 0)


def test_the_same_order_event_re_sent_under_its_event_id_is_a_duplicate(stocked):
    # given an order created, dispatched and delivered
    events = [
        order_created("o-1", {"A": 3}),
        order_dispatched("o-1", minutes=5),
        order_delivered("o-1", minutes=30),
    ]
    batch_apply(stocked, events)

    # when the producer re-sends the very same events
    batch = batch_apply(stocked, events)

    # then each is a duplicate, nothing is rejected and nothing moves
    assert (batch.applied, batch.duplicates, batch.rejected) == (0, 3, 0)
    assert level() == (7, 0)
    assert DeliveryRecord.objects.count() == 1
