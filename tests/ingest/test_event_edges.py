"""Events at the edges of what the product stores: times far away, orders at another site."""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from ingest.dead_letters import dead_letters_replay
from ingest.models import DeadLetter, FeedSource, IngestBatch, Order
from ingest.processing import batch_process
from ledger.models import Movement, StockLevel
from tests.builders import READ_PATHS, site_make, sku_make, user_make
from tests.ingest.helpers import (
    batch_apply,
    event,
    json_body,
    order_created,
    order_delivered,
    order_dispatched,
    received,
    source_make,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def catalog():
    return site_make("north"), site_make("south"), sku_make("A"), sku_make("B")


def level(site="north", sku="A") -> tuple[int, int]:
    row = StockLevel.objects.filter(site__code=site, sku__code=sku).first()
    return (row.on_hand, row.reserved) if row else (0, 0)


def reasons() -> dict[str, tuple[str, str]]:
    return {
        event_id: (code, reason)
        for event_id, code, reason in DeadLetter.objects.values_list(
            "event_id", "reason_code", "reason"
        )
    }


@pytest.mark.parametrize("occurred_at", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"])
def test_an_event_time_no_database_can_give_back_is_rejected_and_every_page_stays_up(
    client, catalog, postgres_only, occurred_at
):
    # given a source, a good receipt already applied, and a superuser looking at the product
    _, token = source_make()
    batch_apply(FeedSource.objects.get(), [received("A", 2, event_id="good-1")])
    viewer = user_make(is_staff=True, is_superuser=True)
    # when a producer posts an event whose time is valid ISO 8601 but far out of range
    poison = {**received("A", 1, event_id="p1"), "occurred_at": occurred_at}
    response = client.post(
        "/api/ingest/events",
        data=json_body([poison]),
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 202
    batch_process(batch_id=response.json()["batch_id"])
    # then it is rejected, the reason naming the field and the accepted range
    batch = IngestBatch.objects.get(pk=response.json()["batch_id"])
    assert (batch.status, batch.applied, batch.rejected) == ("done", 0, 1)
    code, reason = reasons()["p1"]
    assert code == "time_out_of_range"
    assert reason.startswith(f"occurred_at: {occurred_at} is outside the accepted range")
    assert "2000-01-01" in reason and "24 h after now" in reason
    # and nothing of it reached the ledger or the freshness figure
    assert level() == (2, 0)
    assert not Movement.objects.filter(cause_ref__endswith=":p1").exists()
    # and every read path still answers, and the ledger check passes
    client.force_login(viewer)
    for path in READ_PATHS:
        assert client.get(path).status_code == 200, path
    call_command("check_ledger")
    # and a later event of the same source is applied as usual
    later = client.post(
        "/api/ingest/events",
        data=json_body([received("A", 3, event_id="good-2")]),
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert later.status_code == 202
    batch_process(batch_id=later.json()["batch_id"])
    assert level() == (5, 0)


def test_event_times_are_accepted_from_the_floor_to_the_tolerance_after_now(catalog, settings):
    # given a floor and a one-hour tolerance
    settings.EVENT_TIME_FUTURE_TOLERANCE_SECONDS = 3600
    floor = settings.EVENT_TIME_FLOOR
    now = timezone.now()
    source, _ = source_make()
    edges = {
        "at-floor": floor,
        "before-floor": floor - timedelta(microseconds=1),
        "in-59-min": now + timedelta(minutes=59),
        "in-61-min": now + timedelta(minutes=61),
    }
    events = [
        {**received("A", 1, event_id=event_id), "occurred_at": moment.isoformat()}
        for event_id, moment in edges.items()
    ]
    # when they are applied
    batch = batch_apply(source, events)
    # then the two inside the range are applied and the two outside are rejected
    assert (batch.applied, batch.rejected) == (2, 2)
    assert set(reasons()) == {"before-floor", "in-61-min"}
    assert "at most 1 h after now" in reasons()["in-61-min"][1]
    assert level() == (2, 0)


def test_a_future_event_rejected_today_is_applied_by_a_replay_once_its_time_has_come(
    catalog, settings
):
    # given an event two hours ahead of a one-hour tolerance, rejected
    settings.EVENT_TIME_FUTURE_TOLERANCE_SECONDS = 3600
    source, _ = source_make()
    ahead = (timezone.now() + timedelta(hours=2)).isoformat()
    batch_apply(source, [{**received("A", 4, event_id="early-1"), "occurred_at": ahead}])
    assert level() == (0, 0)
    # when the tolerance allows it (as time passing would) and on-call replays it
    settings.EVENT_TIME_FUTURE_TOLERANCE_SECONDS = 3 * 3600
    summary = dead_letters_replay(
        dead_letter_ids=list(DeadLetter.objects.values_list("pk", flat=True)),
        actor=user_make(),
    )
    # then it is applied
    assert summary.applied == 1
    assert level() == (4, 0)


def test_order_events_from_another_source_are_applied_but_not_at_another_site(catalog):
    # given an order created at north by a shop, with stock there
    shop, _ = source_make()
    courier, _ = source_make()
    batch_apply(shop, [received("A", 10), order_created("O-1", {"A": 3})])
    # when a courier app dispatches it naming south, then naming north, then delivers it at south
    batch = batch_apply(
        courier,
        [
            order_dispatched("O-1", event_id="wrong-site", site="south"),
            order_dispatched("O-1", event_id="right-site"),
            order_delivered("O-1", event_id="delivered-south", site="south"),
        ],
    )
    # then only the event at the order's site is applied; the others name both sites
    assert (batch.applied, batch.rejected) == (1, 2)
    assert reasons()["wrong-site"] == (
        "wrong_site",
        "site: order 'O-1' is at site 'north', not 'south'",
    )
    assert reasons()["delivered-south"][0] == "wrong_site"
    assert level("north") == (7, 0)
    assert level("south") == (0, 0)
    assert Order.objects.get(order_id="O-1").state == "dispatched"


def test_a_held_event_at_another_site_is_rejected_when_its_order_arrives(catalog):
    # given a cancellation naming south, held because its order is unknown
    source, _ = source_make()
    batch_apply(source, [event("order.cancelled", "cancel-1", site="south", order_id="O-2")])
    # when the order is created at north
    batch_apply(source, [order_created("O-2", {"A": 1})])
    # then the cancellation is rejected for its site and the reservation stays
    assert reasons()["cancel-1"][0] == "wrong_site"
    assert level("north") == (0, 1)
    assert IngestBatch.objects.order_by("received_at").first().held == 0


def test_integers_and_money_beyond_their_columns_are_rejected_naming_the_field(catalog):
    # given a source and an order at north
    source, _ = source_make()
    batch_apply(source, [order_created("O-3", {"A": 1})])
    huge = 99999999999999999999
    events = [
        received("A", huge, event_id="qty"),
        event("stock.adjusted", "delta", sku="A", qty_delta=9223372036854775807, reason="x"),
        event("stock.counted", "counted", sku="A", counted_qty=huge),
        event("stock.snapshot", "snapshot", lines=[{"sku": "A", "qty": huge}]),
        order_created("O-4", {"A": huge}, event_id="line"),
        order_delivered("O-3", event_id="cost", shipping_cost="12345678901234567890.5"),
        order_delivered("O-3", event_id="places", shipping_cost="1.00001"),
    ]
    # when they are applied
    batch = batch_apply(source, events)
    # then each is rejected with the field and its bound, and stock is unchanged
    assert (batch.applied, batch.rejected) == (0, len(events))
    got = {event_id: reason for event_id, (_, reason) in reasons().items()}
    assert got["qty"] == "qty: Input should be less than or equal to 1000000000"
    assert got["delta"] == "qty_delta: Input should be less than or equal to 1000000000"
    assert got["counted"] == "counted_qty: Input should be less than or equal to 1000000000"
    assert got["snapshot"] == "lines.0.qty: Input should be less than or equal to 1000000000"
    assert got["line"] == "lines.0.qty: Input should be less than or equal to 1000000000"
    assert got["cost"].startswith("shipping_cost: Decimal input should have no more than 14 digits")
    assert got["places"].startswith("shipping_cost: Decimal input should have no more than 4")
    assert level() == (0, 1)


def test_an_event_worth_more_than_one_event_may_move_is_rejected_and_its_batch_applied(catalog):
    # given a SKU at the highest unit cost a SKU may have
    sku_make("GOLD", unit_cost="9999999999.9999")
    source, _ = source_make()
    # when a batch moves a billion units of it, among events of ordinary value
    batch = batch_apply(
        source,
        [
            received("GOLD", 1_000_000_000, event_id="too-much"),
            order_created("O-5", {"A": 1, "GOLD": 1000}, event_id="order-too-much"),
            received("GOLD", 100, event_id="just-fits"),
            received("A", 3, event_id="plain"),
        ],
    )
    # then the batch is applied (no failed transaction, no retry) and only the two within the
    # limit moved stock; the others name the quantity and the limit
    assert (batch.status, batch.attempts, batch.applied, batch.rejected) == ("done", 1, 2, 2)
    got = {event_id: reason for event_id, (_, reason) in reasons().items()}
    assert got["too-much"] == (
        "qty: 1000000000 units of 'GOLD' at 9999999999.9999 are worth more than "
        "1,000,000,000,000, the most one event may move"
    )
    assert got["order-too-much"].startswith("lines.1.qty: 1000 units of 'GOLD'")
    assert level(sku="GOLD") == (100, 0)
    assert level() == (3, 0)
