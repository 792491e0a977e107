"""Alert evaluation through the real pieces: an RQ worker process and RQ's cron scheduler."""

import tempfile
import time
from decimal import Decimal
from pathlib import Path

import django_rq
import pytest
from django.core.management import call_command
from rq.registry import FailedJobRegistry, ScheduledJobRegistry

from oncall.alerts import alerts_evaluation_request
from oncall.models import Alert, AlertKind, AlertRule, AlertStatus
from tests.processes import manage_py, rq_worker, running, subprocess_env

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def wait_for(predicate, timeout=120.0):  # generous: a loaded machine, coverage on
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def failed_ingest_job_in_a_worker():
    queue = django_rq.get_queue("ingest", commit_mode="auto")
    queue.enqueue("tests.oncall.test_console.explode")
    assert wait_for(lambda: FailedJobRegistry(queue=queue).count == 1)


def test_a_requested_evaluation_runs_in_the_worker_and_opens_the_alert(redis_clean):
    AlertRule.objects.create(name="Failed jobs", kind=AlertKind.FAILED_JOBS, threshold=Decimal(0))
    with rq_worker("ingest", "default"):
        failed_ingest_job_in_a_worker()

        alerts_evaluation_request(site_codes=["ams"])

        assert wait_for(lambda: Alert.objects.filter(status=AlertStatus.OPEN).exists())
    alert = Alert.objects.get()
    assert (alert.kind, alert.value) == ("failed_jobs", 1)


ALERTS_SCHEDULED_EVALUATION_JOB = "oncall.jobs.alerts_scheduled_evaluation_job"


def test_the_scheduled_evaluation_opens_and_resolves_an_alert_nobody_asked_for(
    redis_clean, monkeypatch
):
    monkeypatch.setenv("ALERTS_EVALUATION_INTERVAL", "1")
    AlertRule.objects.create(name="Failed jobs", kind=AlertKind.FAILED_JOBS, threshold=Decimal(0))
    env = subprocess_env(ALERTS_EVALUATION_INTERVAL="1")
    worker = manage_py(
        "rqworker",
        "ingest",
        "default",
        "--worker-class",
        "rq.worker.SimpleWorker",
        "--with-scheduler",
    )  # the Procfile's worker line
    with running(worker, env=env, log_name="rqworker-scheduler"):
        failed_ingest_job_in_a_worker()
        call_command("load_runbooks", directory=str(tmp_empty_dir()))  # starts the chain

        assert wait_for(lambda: Alert.objects.filter(status=AlertStatus.OPEN).exists())

        registry = FailedJobRegistry(queue=django_rq.get_queue("ingest"))
        registry.remove(registry.get_job_ids()[0], delete_job=True)
        assert wait_for(lambda: Alert.objects.filter(status=AlertStatus.RESOLVED).exists())
    # One successor of the alert chain is waiting, not a pile (housekeeping has its own chain).
    queue = django_rq.get_queue("default")
    scheduled = [
        queue.fetch_job(job_id) for job_id in ScheduledJobRegistry(queue=queue).get_job_ids()
    ]
    alert_chain = [
        job for job in scheduled if job and job.func_name == ALERTS_SCHEDULED_EVALUATION_JOB
    ]
    assert len(alert_chain) == 1


def tmp_empty_dir():
    path = Path(tempfile.mkdtemp())
    return path
