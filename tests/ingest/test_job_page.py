"""The on-call engineer's queue view (django-rq's job page, /admin/rq/) tells what a batch's job
did: which batch, and its outcome."""

import html
import re
import threading

import django_rq
import pytest
from django.conf import settings
from django.db import connection, transaction

from core.roles import ON_CALL
from ingest.models import BatchStatus, IngestBatch
from ingest.processing import _batches_process_in_transaction, batch_process
from ingest.receiving import batch_job_id, batch_receive
from ledger.models import Movement, StockLevel
from tests.builders import site_make, sku_make, user_make
from tests.ingest.helpers import json_body, received, source_make

pytestmark = pytest.mark.django_db

INGEST_QUEUE_INDEX = list(settings.RQ_QUEUES).index("ingest")


def batch_stored(events: list) -> IngestBatch:
    """A batch as the API stores it, its job not queued yet (that happens at the commit)."""
    site_make("north")
    sku_make("A")
    text = json_body(events)
    return batch_receive(
        source=source_make()[0], body_format="json", raw_body=text, accepted=len(events)
    )


def job_run(batch: IngestBatch) -> None:
    """Queue the batch's job as `batch_enqueue` does and let a real RQ worker run it. (The
    test's transaction never commits: the queue writes at once, as it does after a commit.)"""
    django_rq.get_queue("ingest", commit_mode="auto").enqueue(
        "ingest.jobs.batch_process_job",
        str(batch.pk),
        job_id=batch_job_id(batch.pk),
        result_ttl=300,
    )
    django_rq.get_worker("ingest", worker_class="rq.worker.SimpleWorker").work(burst=True)


def job_result_shown(client, batch: IngestBatch) -> str:
    """The result of the batch's job as an on-call engineer reads it: the job's page, then the
    result it links to."""
    client.force_login(user_make(role=ON_CALL, is_staff=True))
    job_page = client.get(f"/admin/rq/queues/{INGEST_QUEUE_INDEX}/{batch_job_id(batch.pk)}/")
    assert job_page.status_code == 200
    links = re.findall(r'href="([^"]+/results/[^"]+)"', job_page.text)
    assert links, "the job's page links to no result"
    result_page = client.get(html.unescape(links[0]))
    assert result_page.status_code == 200
    return html.unescape(result_page.text)


def test_a_batch_jobs_page_shows_the_batch_applied_and_its_counts(client, redis_clean):
    batch = batch_stored([received("A", 5), received("A", 2)])

    job_run(batch)

    shown = job_result_shown(client, batch)
    assert f"'batch_id': '{batch.pk}', 'status': 'done'" in shown
    assert "'applied': 2" in shown


def test_the_page_of_a_job_that_found_its_batch_done_says_which_batch(client, redis_clean):
    # given a batch applied already (its job ran, or the sweeper's)
    batch = batch_stored([received("A", 5)])
    batch_process(batch_id=batch.pk)

    # when its job runs (again)
    job_run(batch)

    # then the job's page names the batch and says it found nothing to do
    shown = job_result_shown(client, batch)
    assert f"'batch_id': '{batch.pk}', 'status': 'already done, unknown or being applied'" in shown


def test_the_page_of_a_job_that_gave_up_an_interrupted_batch_says_done_and_how_many_rejected(
    client, redis_clean
):
    # given a batch whose every attempt was started and never finished (its workers died)
    batch = batch_stored([received("A", 5), received("A", 2), received("A", 1)])
    IngestBatch.objects.filter(pk=batch.pk).update(
        status=BatchStatus.PROCESSING, attempts=settings.INGEST_MAX_ATTEMPTS
    )

    # when its job runs once more
    job_run(batch)

    # then the job's page names the batch, done, its 3 events rejected (dead letters)
    shown = job_result_shown(client, batch)
    assert f"'batch_id': '{batch.pk}', 'status': 'done', 'rejected': 3" in shown


@pytest.mark.django_db(transaction=True)
def test_the_page_of_a_job_whose_batch_another_workers_group_took_says_so(
    client, redis_clean, postgres_only
):
    # given a stored batch, its job queued (the batch is committed: autocommit)
    batch = batch_stored([received("A", 5), received("A", 2)])
    other_locked, other_go = threading.Event(), threading.Event()
    other_counts = {}

    def other_workers_group():
        # Another worker's group locks the batch row, as its transaction does, and applies it.
        try:
            with transaction.atomic():
                IngestBatch.objects.select_for_update().filter(pk=batch.pk).get()
                other_locked.set()
                assert other_go.wait(20)
                other_counts.update(_batches_process_in_transaction([batch.pk]))
        finally:
            connection.close()

    other = threading.Thread(target=other_workers_group)

    def lock_taken_before_apply(execute, sql, params, many, context):
        # The job's own claim has committed; its transaction is about to lock its batch
        # (`FOR UPDATE OF`, the claim's lock has no OF): the other group locks it first.
        if "FOR UPDATE OF" in sql and not other.is_alive() and not other_locked.is_set():
            other.start()
            assert other_locked.wait(20)
        return execute(sql, params, many, context)

    # when its job runs (a real RQ worker, in this thread) just as the other group takes it
    with connection.execute_wrapper(lock_taken_before_apply):
        django_rq.get_worker("ingest", worker_class="rq.worker.SimpleWorker").work(burst=True)
    assert other_locked.is_set(), "the job never reached its transaction"
    other_go.set()
    other.join(timeout=20)
    assert not other.is_alive(), "the other worker's group is stuck"

    # then the job's page names the batch and says another worker is applying it
    shown = job_result_shown(client, batch)
    assert f"{{'batch_id': '{batch.pk}', 'status': 'being applied by another worker'}}" in shown
    # and the batch was applied once, by the other group: no loss, no double apply
    assert other_counts[batch.pk]["applied"] == 2
    batch.refresh_from_db()
    assert (batch.status, batch.applied, batch.attempts) == (BatchStatus.DONE, 2, 1)
    assert Movement.objects.count() == 2
    assert StockLevel.objects.get(site__code="north", sku__code="A").on_hand == 7
