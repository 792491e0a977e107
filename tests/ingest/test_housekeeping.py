"""Retention (`manage.py housekeeping`): raw bodies, idempotency keys and resolved dead letters
go when they are due and not before; ledger rows never go; inside the key window a re-sent
event is still a duplicate."""

import io
from datetime import timedelta

import django_rq
import pytest
from django.core.management import call_command
from django.utils import timezone
from rq.registry import ScheduledJobRegistry

from ingest.dead_letters import dead_letters_discard
from ingest.housekeeping import HOUSEKEEPING_CHAIN, housekeeping_run
from ingest.jobs import housekeeping_scheduled_job
from ingest.models import (
    ArchivedDeadLetter,
    DeadLetter,
    DeadLetterStatus,
    IngestBatch,
    ProcessedEvent,
)
from ingest.receiving import batch_receive
from ledger.models import Movement, StockLevel
from tests.builders import site_make, sku_make, user_make
from tests.ingest.helpers import batch_apply, json_body, received, source_make

pytestmark = pytest.mark.django_db


@pytest.fixture
def source():
    site_make("north")
    sku_make("A")
    return source_make()[0]


def batch_aged(source, days: float, *events) -> IngestBatch:
    """A batch applied now, then made to look received `days` ago."""
    batch = batch_apply(source, list(events))
    IngestBatch.objects.filter(pk=batch.pk).update(
        received_at=timezone.now() - timedelta(days=days)
    )
    return IngestBatch.objects.get(pk=batch.pk)


def on_hand() -> int:
    return StockLevel.objects.get(site__code="north", sku__code="A").on_hand


def keys_of(batch) -> set[str]:
    return set(ProcessedEvent.objects.filter(batch=batch).values_list("event_id", flat=True))


def test_bodies_past_30_days_and_keys_past_90_days_go_and_nothing_else(source):
    # given batches received 95, 60 and 10 days ago, and one 40 days ago still queued
    old = batch_aged(source, 95, received("A", 1, event_id="e-95"))
    middle = batch_aged(source, 60, received("A", 2, event_id="e-60"))
    recent = batch_aged(source, 10, received("A", 4, event_id="e-10"))
    queued_body = json_body([received("A", 8, event_id="e-40")])
    queued = batch_receive(source=source, body_format="json", raw_body=queued_body, accepted=1)
    IngestBatch.objects.filter(pk=queued.pk).update(received_at=timezone.now() - timedelta(days=40))
    movements = Movement.objects.count()

    # when housekeeping runs
    report = housekeeping_run()

    # then bodies older than 30 days of finished batches are empty, the others whole
    bodies = dict(IngestBatch.objects.values_list("pk", "raw_body"))
    assert bodies[old.pk] == bodies[middle.pk] == ""
    assert "e-10" in bodies[recent.pk]
    assert bodies[queued.pk] == queued_body
    # and only the keys older than 90 days are gone
    assert keys_of(old) == set()
    assert keys_of(middle) == {"e-60"}
    assert keys_of(recent) == {"e-10"}
    # and the batches, their counts and the ledger are untouched
    assert IngestBatch.objects.get(pk=old.pk).applied == 1
    assert Movement.objects.count() == movements
    assert on_hand() == 7
    assert (report.bodies_dropped, report.key_batches, report.keys_dropped) == (2, 1, 1)


def test_a_resend_inside_the_key_window_is_still_a_duplicate(source):
    # given an event applied 89 days ago, and housekeeping run since
    batch_aged(source, 89, received("A", 5, event_id="resent"))
    housekeeping_run()

    # when the producer sends it again
    again = batch_apply(source, [received("A", 5, event_id="resent")])

    # then it is a duplicate and changes nothing
    assert (again.applied, again.duplicates) == (0, 1)
    assert on_hand() == 5


def test_a_resend_after_the_key_window_is_applied_again_as_the_docs_say(source):
    batch_aged(source, 91, received("A", 5, event_id="resent"))
    housekeeping_run()

    again = batch_apply(source, [received("A", 5, event_id="resent")])

    assert (again.applied, again.duplicates) == (1, 0)
    assert on_hand() == 10


def test_resolved_dead_letters_past_90_days_are_archived_whole_open_ones_stay(source):
    # given three rejected events: two discarded 91 and 89 days ago, one left open
    batch = batch_aged(
        source,
        200,
        received("NOPE", 1, event_id="bad-1"),
        received("NOPE", 1, event_id="bad-2"),
        received("NOPE", 1, event_id="bad-3"),
    )
    letters = {letter.event_id: letter for letter in DeadLetter.objects.filter(batch=batch)}
    dead_letters_discard(
        dead_letter_ids=[letters["bad-1"].pk, letters["bad-2"].pk],
        actor=user_make("oncall"),
        note="unknown SKU, never sold",
    )
    now = timezone.now()
    DeadLetter.objects.filter(pk=letters["bad-1"].pk).update(discarded_at=now - timedelta(days=91))
    DeadLetter.objects.filter(pk=letters["bad-2"].pk).update(discarded_at=now - timedelta(days=89))

    # when housekeeping runs
    report = housekeeping_run()

    # then the one discarded 91 days ago is in the archive with its payload and reason
    assert set(DeadLetter.objects.values_list("event_id", flat=True)) == {"bad-2", "bad-3"}
    archived = ArchivedDeadLetter.objects.get()
    assert archived.dead_letter_id == letters["bad-1"].pk
    assert "bad-1" in archived.payload
    assert archived.reason == letters["bad-1"].reason
    assert archived.status == DeadLetterStatus.DISCARDED
    assert archived.discard_note == "unknown SKU, never sold"
    assert report.dead_letters_archived == 1
    assert DeadLetter.objects.get(event_id="bad-3").status == DeadLetterStatus.OPEN


def test_the_command_reports_what_it_did_with_progress_and_a_second_run_finds_nothing(source):
    batch_aged(source, 95, received("A", 1, event_id="e-95"))
    first, second = io.StringIO(), io.StringIO()

    call_command("housekeeping", stdout=first)
    call_command("housekeeping", stdout=second)

    assert "raw bodies dropped: 1 batches" in first.getvalue()
    assert "idempotency keys dropped: 1 of 1 batches" in first.getvalue()
    assert "[##############################] 100.0%" in first.getvalue()
    assert "raw bodies dropped: 0 batches" in second.getvalue()
    assert "idempotency keys dropped: 0 of 0 batches" in second.getvalue()


def test_the_scheduled_run_does_the_housekeeping_and_schedules_the_next(source, redis_clean):
    # given the chain started by the release step, and a batch past its retention
    call_command("housekeeping", schedule=True, stdout=io.StringIO())
    queue = django_rq.get_queue("default", commit_mode="auto")
    registry = ScheduledJobRegistry(queue=queue)
    [first] = registry.get_job_ids()
    old = batch_aged(source, 95, received("A", 1, event_id="e-95"))

    # when its job comes due and a worker runs it
    registry.remove(first)
    queue.enqueue_job(queue.fetch_job(first))
    django_rq.get_worker("default", worker_class="rq.worker.SimpleWorker").work(burst=True)

    # then the batch's body and keys are gone and the next run is scheduled
    assert queue.fetch_job(first).return_value()["keys_dropped"] == 1
    assert IngestBatch.objects.get(pk=old.pk).raw_body == ""
    [successor] = registry.get_job_ids()
    assert successor != first
    assert redis_clean.get(HOUSEKEEPING_CHAIN.owner_key).decode() == successor


def test_a_duplicate_scheduled_run_does_nothing(source, redis_clean):
    batch_aged(source, 95, received("A", 1, event_id="e-95"))
    queue = django_rq.get_queue("default", commit_mode="auto")
    stray = queue.enqueue(housekeeping_scheduled_job)

    django_rq.get_worker("default", worker_class="rq.worker.SimpleWorker").work(burst=True)

    assert queue.fetch_job(stray.id).return_value() is None
    assert ProcessedEvent.objects.filter(event_id="e-95").exists()
