"""Applying batches in process: validation, idempotency, orders, holding, dead letters."""

import pytest
from django.db.models import Value
from django.db.models.functions import Replace

from ingest.dead_letters import dead_letters_discard, dead_letters_replay
from ingest.models import DeadLetter, DeadLetterStatus, HeldEvent, Order, OrderState
from ingest.processing import HELD_RELEASE_CHUNK, held_events_release
from ingest.sweep import held_events_expire, ingest_sweep
from ledger.models import Movement, StockLevel
from tests.builders import site_make, sku_make, user_make
from tests.ingest.helpers import (
    batch_apply,
    event,
    order_created,
    order_delivered,
    order_dispatched,
    received,
    source_make,
    table_trigger,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def catalog():
    return {
        "north": site_make("north"),
        "south": site_make("south"),
        "A": sku_make("A"),
        "B": sku_make("B"),
    }


def level(site="north", sku="A") -> tuple[int, int]:
    row = StockLevel.objects.filter(site__code=site, sku__code=sku).first()
    return (row.on_hand, row.reserved) if row else (0, 0)


def test_good_duplicate_and_bad_events_each_counted_with_reasons(catalog):
    # given a source that already sent one event
    source, _ = source_make()
    batch_apply(source, [received("A", 5, event_id="r-1")])
    # when a batch mixes a good, a re-sent and two bad events
    batch = batch_apply(
        source,
        [
            received("A", 3, event_id="r-2"),
            received("A", 5, event_id="r-1"),
            received("A", 0, event_id="r-3"),
            received("NOPE", 1, event_id="r-4"),
        ],
    )
    # then the good one is applied once and the bad ones are dead letters naming the field
    assert (batch.status, batch.applied, batch.duplicates, batch.rejected) == ("done", 1, 1, 2)
    assert level() == (8, 0)
    reasons = dict(DeadLetter.objects.values_list("event_id", "reason"))
    assert reasons["r-3"].startswith("qty: ")
    assert reasons["r-4"] == "sku: unknown SKU 'NOPE'"


def test_the_same_feed_twice_changes_nothing_the_second_time(catalog):
    source, _ = source_make()
    feed = [
        received("A", 10, event_id="a"),
        order_created("o-1", {"A": 2}, event_id="b"),
        order_dispatched("o-1", event_id="c"),
    ]
    batch_apply(source, feed)
    movements = Movement.objects.count()
    again = batch_apply(source, feed)
    assert (again.applied, again.duplicates) == (0, 3)
    assert Movement.objects.count() == movements
    assert level() == (8, 0)


def test_an_event_id_is_the_same_key_with_or_without_surrounding_whitespace(catalog):
    # found by the fuzz test: the ids are stripped, so the ledger names the stripped id
    source, _ = source_make()
    batch_apply(source, [received("A", 10, event_id="\x97\n")])
    again = batch_apply(source, [received("A", 10, event_id=" \x97")])

    assert (again.applied, again.duplicates) == (0, 1)
    assert list(Movement.objects.values_list("cause_ref", flat=True)) == [f"{source.name}:\x97"]
    assert level() == (10, 0)


def test_out_of_order_events_end_like_in_order(catalog):
    # given the same order's events, once in order and once reversed, in separate batches
    source, _ = source_make()
    in_order = [
        order_created("o-1", {"A": 2, "B": 1}, minutes=0),
        order_dispatched("o-1", minutes=5),
        order_delivered("o-1", minutes=30),
    ]
    reversed_ = [
        order_created("o-2", {"A": 2, "B": 1}, site="south", minutes=0),
        order_dispatched("o-2", site="south", minutes=5),
        order_delivered("o-2", site="south", minutes=30),
    ][::-1]
    batch_apply(source, in_order)
    first = batch_apply(source, reversed_[:1])
    batch_apply(source, reversed_[1:2])
    assert first.held == 1 and HeldEvent.objects.count() == 2
    batch_apply(source, reversed_[2:])
    # then the early ones were held, and applied once the order appeared
    assert HeldEvent.objects.count() == 0
    assert level("south", "A") == level("north", "A") == (-2, 0)
    assert level("south", "B") == level("north", "B") == (-1, 0)
    assert Order.objects.get(order_id="o-2").state == OrderState.DISPATCHED
    first.refresh_from_db()
    assert (first.applied, first.held) == (1, 0)


def test_out_of_order_within_one_batch(catalog):
    source, _ = source_make()
    batch = batch_apply(
        source,
        [
            order_delivered("o-9", minutes=30),
            order_dispatched("o-9", minutes=5),
            order_created("o-9", {"A": 3}, minutes=0),
        ],
    )
    assert (batch.applied, batch.held) == (3, 0)
    assert level() == (-3, 0)


def test_held_event_expires_to_unknown_order(catalog, settings):
    settings.INGEST_HOLD_SECONDS = 0
    source, _ = source_make()
    batch = batch_apply(source, [order_dispatched("ghost", event_id="d-1")])
    assert batch.held == 1
    ingest_sweep()
    batch.refresh_from_db()
    assert (batch.held, batch.rejected) == (0, 1)
    letter = DeadLetter.objects.get()
    assert letter.reason.startswith("order_id: unknown order 'ghost'")


def test_held_event_whose_order_now_exists_is_not_expired(catalog, settings):
    # The window between a group's commit (the order exists) and the release of its held
    # events: the sweeper must release the event, not reject it as "unknown order".
    settings.INGEST_HOLD_SECONDS = 0
    source, _ = source_make()
    batch_apply(source, [order_created("o-1", {"A": 2}, minutes=0, event_id="c-1")])
    batch_apply(source, [order_dispatched("ghost", event_id="d-1", minutes=5)])
    held = HeldEvent.objects.get(order_id="ghost")
    held.order_id = "o-1"
    held.payload = held.payload.replace('"ghost"', '"o-1"')
    held.save()
    assert held_events_expire() == 0
    assert held_events_release() == 1
    assert not DeadLetter.objects.exists()
    assert Order.objects.get(order_id="o-1").state == OrderState.DISPATCHED


def held_for_orders_that_now_exist(source, count: int):
    """`count` held events whose orders exist now: the orders were created by a group that
    committed while these events' group was holding them, each unseen by the other (made here
    by pointing held events at existing orders). Returns the holding batch."""
    batch_apply(source, [order_created(f"o-{n}", {"A": 1}, minutes=0) for n in range(count)])
    held_batch = batch_apply(
        source, [order_dispatched(f"ghost-{n}", minutes=5) for n in range(count)]
    )
    assert held_batch.held == count
    HeldEvent.objects.update(
        order_id=Replace("order_id", Value("ghost-"), Value("o-")),
        payload=Replace("payload", Value('"ghost-'), Value('"o-')),
    )
    return held_batch


def test_every_held_event_whose_order_appeared_meanwhile_is_released_at_the_next_commit(
    catalog, django_capture_on_commit_callbacks
):
    # given more such held events than one release takes at a time
    count = HELD_RELEASE_CHUNK + 1
    source, _ = source_make()
    held_batch = held_for_orders_that_now_exist(source, count)

    # when the next batch that creates an order commits
    with django_capture_on_commit_callbacks(execute=True):
        batch_apply(source, [order_created("o-next", {"A": 1}, minutes=6)])

    # then every held event is applied, in as many releases as it takes, none left waiting
    assert not HeldEvent.objects.exists()
    held_batch.refresh_from_db()
    assert (held_batch.applied, held_batch.held) == (count, 0)
    dispatched = Order.objects.filter(state=OrderState.DISPATCHED).count()
    assert dispatched == count


def test_held_events_the_database_refuses_to_release_are_left_for_the_sweeper_saying_why(
    catalog, django_capture_on_commit_callbacks, caplog, postgres_only
):
    # given a held event whose order exists now, and a database refusing to release it
    source, _ = source_make()
    held_for_orders_that_now_exist(source, 1)
    refusal = table_trigger("ingest_heldevent", "BEFORE DELETE", "RAISE EXCEPTION 'disk full'")
    # when the next batch that creates an order commits
    with refusal, django_capture_on_commit_callbacks(execute=True):
        batch = batch_apply(source, [order_created("o-next", {"A": 1}, minutes=6)])

    # then that batch is applied all the same, and the log says the held event was left and why
    assert (batch.status, batch.applied) == ("done", 1)
    assert HeldEvent.objects.count() == 1
    [warning] = [r for r in caplog.records if r.levelname == "WARNING" and "held" in r.message]
    assert warning.getMessage().startswith("held events left for the sweeper: disk full")
    # and the sweeper releases it once the database accepts it again
    assert ingest_sweep()["held_released"] == 1
    assert Order.objects.get(order_id="o-0").state == OrderState.DISPATCHED


def test_dead_letter_replayed_after_the_sku_is_created(catalog):
    source, _ = source_make()
    batch = batch_apply(source, [received("LATE", 4, event_id="x-1")])
    letter = DeadLetter.objects.get()
    user = user_make()
    # still unknown: stays open
    assert dead_letters_replay(dead_letter_ids=[letter.pk], actor=user).still_rejected == 1
    sku_make("LATE")
    summary = dead_letters_replay(dead_letter_ids=[letter.pk], actor=user)
    assert summary.applied == 1
    letter.refresh_from_db()
    batch.refresh_from_db()
    assert (letter.status, letter.replay_count, letter.handled_by) == ("replayed", 2, user)
    assert (batch.applied, batch.rejected) == (1, 0)
    assert level(sku="LATE") == (4, 0)
    # replaying again does nothing
    assert dead_letters_replay(dead_letter_ids=[letter.pk], actor=user).skipped == 1


def test_dead_letter_discard_needs_a_note(catalog):
    source, _ = source_make()
    batch_apply(source, [{"nonsense": True}])
    letter = DeadLetter.objects.get()
    user = user_make()
    with pytest.raises(ValueError, match="note"):
        dead_letters_discard(dead_letter_ids=[letter.pk], actor=user, note=" ")
    assert dead_letters_discard(dead_letter_ids=[letter.pk], actor=user, note="test junk") == 1
    letter.refresh_from_db()
    assert (letter.status, letter.discard_note) == (DeadLetterStatus.DISCARDED, "test junk")


def test_every_event_type_moves_stock_as_specified(catalog):
    source, _ = source_make()
    batch_apply(
        source,
        [
            received("A", 10),
            event("stock.transferred", sku="A", qty=4, to_site="south"),
            event("stock.adjusted", sku="A", qty_delta=-1, reason="damaged"),
            event("stock.counted", sku="B", counted_qty=7),
            order_created("o-5", {"A": 2}),
            order_created("o-6", {"B": 3}),
            event("order.cancelled", order_id="o-6"),
            order_dispatched("o-5"),
            event("order.returned", order_id="o-5", lines=[{"sku": "A", "qty": 1}]),
            event("stock.snapshot", lines=[{"sku": "A", "qty": 4}]),
        ],
    )
    assert level("north", "A") == (10 - 4 - 1 - 2 + 1, 0)
    assert level("south", "A") == (4, 0)
    assert level("north", "B") == (7, 0)


def test_unstorable_text_rejects_only_when_in_a_field_we_keep(catalog):
    # given text PostgreSQL cannot store, in a kept field and in an ignored extra field
    source, _ = source_make()
    kept = received("A", 1, event_id="nul-kept", reference="PO\u00001")
    ignored = received("A", 2, event_id="nul-ignored", note="x\u0000y")
    surrogate = received("A", 4, event_id="surrogate", reference="\ud800")
    batch = batch_apply(source, [kept, ignored, surrogate])
    # then the kept ones are rejected naming the field, and the other applied
    assert (batch.applied, batch.rejected) == (1, 2)
    reasons = dict(DeadLetter.objects.values_list("event_id", "reason"))
    assert reasons["nul-kept"] == "reference: contains a NUL character"
    assert reasons["surrogate"].startswith("reference: ")  # pydantic refuses lone surrogates
    assert level() == (2, 0)


def test_orders_per_minute_counts_orders_not_their_lines(catalog):
    from datetime import timedelta

    from kpis.trends import kpi_trends_compute
    from tests.ingest.helpers import BASE_TIME

    # given two orders in the same minute, one of three lines
    source, _ = source_make()
    batch_apply(
        source,
        [
            received("A", 10),
            received("B", 10),
            order_created("o-lines", {"A": 1, "B": 2}, minutes=1),
            order_created("o-single", {"A": 1}, minutes=1),
        ],
    )

    trends = kpi_trends_compute(site="north", window="1h", now=BASE_TIME + timedelta(minutes=30))
    assert sum(point["value"] or 0 for point in trends["orders_per_minute"]) == 2
