"""A batch that kills every worker applying it is stopped by counting its claims."""

import signal
import sys
import time

import pytest
from django.core.management import call_command

from core.roles import ON_CALL
from ingest.models import BatchStatus, DeadLetter, IngestBatch
from ledger.models import StockLevel
from tests.builders import site_make, sku_make, user_make
from tests.ingest.helpers import json_body, received, source_make
from tests.processes import running, subprocess_env
from tests.redis_db import redis_test_db_flush

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def catalog(postgres_only):
    redis_test_db_flush()
    return site_make("north"), sku_make("A"), sku_make("B")


def dying_worker(log_name: str):
    """The Procfile's worker, sweeping fast, that SIGKILLs itself on the event `fatal-1`."""
    env = subprocess_env(
        DIE_ON_EVENT_ID="fatal-1", INGEST_SWEEP_SECONDS="0.5", INGEST_SWEEP_GRACE_SECONDS="1"
    )
    args = [sys.executable, "-m", "tests.ingest.dying_worker", "rqworker", "ingest"]
    args += ["--worker-class", "ingest.worker.IngestWorker"]
    return running(args, env=env, log_name=log_name)


def post(client, token, events):
    response = client.post(
        "/api/ingest/events",
        data=json_body(events),
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 202
    return response.json()["batch_id"]


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise TimeoutError(f"{what} within {timeout} s")


def test_a_batch_that_kills_its_worker_every_time_becomes_dead_letters_after_three_claims(
    client, catalog
):
    # given a batch holding an event that kills (SIGKILL) any worker applying it, and the
    # default cap of claims
    _, token = source_make()
    poison_id = post(
        client, token, [received("A", 5, event_id="ok-1"), received("B", 7, event_id="fatal-1")]
    )
    # when workers keep being started (as a supervisor restarts them) while another batch waits
    good_id = None
    deaths = 0
    for start in range(1, 7):
        with dying_worker(f"dying-worker-{start}") as worker:
            wait_for(
                lambda: (
                    worker.poll() is not None
                    or IngestBatch.objects.get(pk=poison_id).status == BatchStatus.DONE
                ),
                timeout=90,
                what=f"worker {start} neither died nor finished the poison batch",
            )
            if worker.poll() is not None:
                assert worker.returncode == -signal.SIGKILL
                deaths += 1
                if good_id is None:
                    good_id = post(client, token, [received("A", 2, event_id="good-1")])
                continue
            # then the worker that finds the batch claimed three times finishes it unapplied
            wait_for(
                lambda batch_id=good_id: (
                    IngestBatch.objects.get(pk=batch_id).status == BatchStatus.DONE
                ),
                timeout=60,
                what="the good batch was not applied",
            )
            assert worker.poll() is None  # and stays up for the other batches
            break
    assert deaths == 3
    poison = IngestBatch.objects.get(pk=poison_id)
    assert (poison.status, poison.attempts, poison.applied, poison.rejected) == ("done", 4, 0, 2)
    letters = list(DeadLetter.objects.filter(batch_id=poison_id).order_by("index"))
    assert [letter.reason_code for letter in letters] == ["processing_failed"] * 2
    assert "started 3 times and never finished" in letters[1].reason
    # and nothing of it reached the ledger, while the good batch did
    assert list(StockLevel.objects.values_list("sku__code", "on_hand")) == [("A", 2)]
    call_command("check_ledger")
    # and on-call sees it among the dead letters, with the reason
    client.force_login(user_make(role=ON_CALL, is_staff=True))
    page = client.get("/admin/ingest/deadletter/?reason_code__exact=processing_failed")
    assert page.status_code == 200
    assert "fatal-1" in page.text and "never finished" in page.text
