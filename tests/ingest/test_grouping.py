"""A worker's job applies queued batches together: each still reports its own outcome."""

import pytest

from ingest.models import DeadLetter, IngestBatch
from ingest.parsing import events_parse
from ingest.processing import batch_process
from ingest.receiving import batch_receive
from kpis.models import SnapshotRecord
from ledger.models import Movement, StockLevel
from tests.builders import site_make, sku_make
from tests.ingest.helpers import (
    event,
    json_body,
    order_created,
    order_dispatched,
    poison_event,
    received,
)
from tests.ingest.helpers import source_make as _source_make

pytestmark = pytest.mark.django_db


@pytest.fixture
def source():
    site_make("north")
    sku_make("A")
    sku_make("B")
    return _source_make()[0]


def batch_store(source, events: list) -> IngestBatch:
    """Store a batch as the API does, without applying it (it waits, queued)."""
    text = json_body(events)
    count = len(events_parse(body_format="json", text=text))
    return batch_receive(source=source, body_format="json", raw_body=text, accepted=count)


def fetched(batch: IngestBatch) -> tuple:
    batch.refresh_from_db()
    return (batch.status, batch.applied, batch.duplicates, batch.rejected, batch.held)


def on_hand(sku="A") -> int:
    level = StockLevel.objects.filter(site__code="north", sku__code=sku).first()
    return level.on_hand if level else 0


def test_queued_batches_applied_together_each_report_their_own_counts_and_reasons(source):
    # given three queued batches, each with good and bad events
    first = batch_store(
        source, [received("A", 5, event_id="a-1"), received("A", 0, event_id="a-2")]
    )
    second = batch_store(source, [received("B", 2, event_id="b-1")])
    third = batch_store(
        source,
        [
            received("NOPE", 1, event_id="c-1"),
            order_dispatched("o-late", event_id="c-2"),
            received("A", 1, event_id="c-3"),
        ],
    )
    # when the first batch's job runs with grouping
    result = batch_process(batch_id=first.pk, group_events=10_000)
    # then all three are done in one go, each with its own counts
    assert result["grouped_with"] == 2
    assert fetched(first) == ("done", 1, 0, 1, 0)
    assert fetched(second) == ("done", 1, 0, 0, 0)
    assert fetched(third) == ("done", 1, 0, 1, 1)
    # and each rejection names its own batch and position
    letters = {
        letter.event_id: (letter.batch_id, letter.index, letter.reason)
        for letter in DeadLetter.objects.all()
    }
    assert letters["a-2"][:2] == (first.pk, 1)
    assert letters["a-2"][2].startswith("qty: ")
    assert letters["c-1"] == (third.pk, 0, "sku: unknown SKU 'NOPE'")
    assert (on_hand("A"), on_hand("B")) == (6, 2)
    # and the other batches' own jobs, when they run, find them done and change nothing
    assert batch_process(batch_id=second.pk, group_events=10_000)["status"].startswith("already")
    assert Movement.objects.count() == 3


def test_a_resent_event_in_a_later_batch_of_the_group_is_a_duplicate(source):
    # given an event, and the same event re-sent in the next batch, both queued
    first = batch_store(source, [received("A", 5, event_id="same"), order_created("o-1", {"A": 1})])
    resent = batch_store(source, [received("A", 5, event_id="same")])
    # when they are applied as a group
    batch_process(batch_id=first.pk, group_events=10_000)
    # then the re-sent copy is a duplicate of its own batch, and the stock moved once
    assert fetched(first) == ("done", 2, 0, 0, 0)
    assert fetched(resent) == ("done", 0, 1, 0, 0)
    assert on_hand("A") == 5


def test_an_order_created_in_one_batch_and_dispatched_in_the_next_is_applied_in_order(source):
    # given an order and its dispatch in two queued batches
    first = batch_store(source, [received("A", 9), order_created("o-2", {"A": 4})])
    second = batch_store(source, [order_dispatched("o-2")])
    # when the job of the later batch runs first and takes the older one in its group
    batch_process(batch_id=second.pk, group_events=10_000)
    # then the older batch's events come first: the dispatch finds its order
    assert fetched(first) == ("done", 2, 0, 0, 0)
    assert fetched(second) == ("done", 1, 0, 0, 0)
    assert StockLevel.objects.get(site__code="north", sku__code="A").reserved == 0
    assert on_hand("A") == 5


def test_a_snapshot_sees_the_earlier_batches_of_its_group(source):
    # given a receipt, then a snapshot that saw it, in two queued batches
    batch_store(source, [received("A", 5)])
    second = batch_store(source, [event("stock.snapshot", lines=[{"sku": "A", "qty": 5}])])
    # when they are applied as a group
    batch_process(batch_id=second.pk, group_events=10_000)
    # then the snapshot agrees with the stock at its place in the group (5, not 0)
    (record,) = SnapshotRecord.objects.all()
    assert (record.mismatched_lines, record.lines) == (0, [[record.lines[0][0], 5, 5]])


def test_a_group_takes_queued_batches_oldest_first_up_to_its_event_budget(source):
    batches = [batch_store(source, [received("A", 1), received("A", 1)]) for _ in range(3)]
    # when the first job may take 5 events: its own 2 and the next batch's 2, not the third's
    result = batch_process(batch_id=batches[0].pk, group_events=5)
    assert result["grouped_with"] == 1
    assert [fetched(batch)[0] for batch in batches] == ["done", "done", "queued"]
    # and without grouping a job applies only its own batch
    assert batch_process(batch_id=batches[2].pk)["status"] == "done"
    assert on_hand("A") == 6


def test_a_job_whose_batch_is_done_applies_nothing_else(source):
    done = batch_store(source, [received("A", 1)])
    batch_process(batch_id=done.pk)
    waiting = batch_store(source, [received("A", 1)])
    result = batch_process(batch_id=done.pk, group_events=10_000)
    assert result["status"].startswith("already done")
    assert fetched(waiting)[0] == "queued"


def test_a_poisoned_batch_in_a_group_is_left_alone_and_the_others_are_applied_one_by_one(
    source, postgres_only, caplog
):
    # given three queued batches, the middle one holding an event whose storing fails
    first = batch_store(source, [received("A", 5, event_id="p-1")])
    poisoned = batch_store(
        source, [received("B", 2, event_id="p-2"), received("A", 9, event_id="bad")]
    )
    third = batch_store(source, [received("B", 3, event_id="p-3")])

    with poison_event("bad"):
        # when the first batch's job runs with grouping (the group's transaction fails)
        result = batch_process(batch_id=first.pk, group_events=10_000)

        # then the first and the third are applied each on its own, with their counts
        assert result["status"] == "done" and "grouped_with" not in result
        assert fetched(first) == ("done", 1, 0, 0, 0)
        assert fetched(third) == ("done", 1, 0, 0, 0)
        # and the poisoned one is left, unapplied, for its own job: which fails, to be retried;
        # the log names it
        assert fetched(poisoned)[0] != "done"
        assert f"batch {poisoned.pk} failed: its job or the sweeper retries it" in caplog.messages
        with pytest.raises(Exception, match="poisoned event bad"):
            batch_process(batch_id=poisoned.pk, group_events=10_000)
    assert (on_hand("A"), on_hand("B")) == (5, 3)
    assert Movement.objects.filter(cause_ref__contains="p-2").count() == 0
    assert not DeadLetter.objects.filter(batch=poisoned).exists()


def test_a_batch_that_fails_at_every_attempt_becomes_dead_letters_with_their_event_ids(
    source, settings, postgres_only
):
    # given a queued batch holding an event whose storing fails, and a cap of 2 attempts
    settings.INGEST_MAX_ATTEMPTS = 2
    batch = batch_store(
        source, [received("A", 5, event_id="fine-1"), received("B", 7, event_id="bad")]
    )
    with poison_event("bad"):
        # when its job fails once, then runs again at the cap
        with pytest.raises(Exception, match="poisoned event bad"):
            batch_process(batch_id=batch.pk)
        assert fetched(batch)[0] != "done"
        result = batch_process(batch_id=batch.pk)

    # then it is done with nothing applied, every event a dead letter under its own event id
    # saying why, and none of it pending
    assert result == {"batch_id": str(batch.pk), "status": "done", "rejected": 2}
    assert fetched(batch) == ("done", 0, 0, 2, 0)
    assert (batch.attempts, batch.pending) == (2, 0)
    letters = DeadLetter.objects.filter(batch=batch).order_by("index")
    assert [(letter.index, letter.event_id, letter.reason_code) for letter in letters] == [
        (0, "fine-1", "processing_failed"),
        (1, "bad", "processing_failed"),
    ]
    assert all(
        letter.reason.startswith("processing failed 2 times: poisoned event bad")
        for letter in letters
    )
    assert (on_hand("A"), on_hand("B")) == (0, 0)
