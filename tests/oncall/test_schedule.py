import django_rq
import pytest
from rq.job import Job
from rq.registry import ScheduledJobRegistry

from oncall.jobs import alerts_scheduled_evaluation_job
from oncall.schedule import SCHEDULED_JOB_KEY, alerts_schedule_ensure

pytestmark = pytest.mark.django_db


def scheduled_ids(function: str = "alerts_scheduled_evaluation_job"):
    """The scheduled jobs of one chain (the alert chain also restarts the housekeeping one)."""
    queue = django_rq.get_queue("default")
    ids = ScheduledJobRegistry(queue=queue).get_job_ids()
    return [job_id for job_id in ids if queue.fetch_job(job_id).func_name.endswith(function)]


def run_now(job_id):
    """Move a scheduled job to its queue (as RQ's scheduler does when due) and run it."""
    queue = django_rq.get_queue("default", commit_mode="auto")
    ScheduledJobRegistry(queue=queue).remove(job_id)
    queue.enqueue_job(Job.fetch(job_id, connection=queue.connection))
    django_rq.get_worker("default", worker_class="rq.worker.SimpleWorker").work(burst=True)
    return Job.fetch(job_id, connection=queue.connection)


def test_ensure_starts_one_chain_and_only_one(redis_clean):
    assert alerts_schedule_ensure() is True
    assert alerts_schedule_ensure() is False

    [job_id] = scheduled_ids()
    assert redis_clean.get(SCHEDULED_JOB_KEY).decode() == job_id


def test_each_run_hands_the_chain_to_its_successor(redis_clean):
    alerts_schedule_ensure()
    [first] = scheduled_ids()

    finished = run_now(first)

    assert finished.return_value() == 0  # evaluated (no rules)
    [successor] = scheduled_ids()
    assert successor != first
    assert redis_clean.get(SCHEDULED_JOB_KEY).decode() == successor
    assert len(scheduled_ids("housekeeping_scheduled_job")) == 1  # restarted with it


def test_a_duplicate_run_neither_evaluates_nor_schedules(redis_clean):
    alerts_schedule_ensure()
    [owner] = scheduled_ids()
    queue = django_rq.get_queue("default", commit_mode="auto")
    duplicate = queue.enqueue(alerts_scheduled_evaluation_job)

    django_rq.get_worker("default", worker_class="rq.worker.SimpleWorker").work(burst=True)

    assert Job.fetch(duplicate.id, connection=queue.connection).return_value() is None
    assert scheduled_ids() == [owner]


def test_a_lost_chain_is_restarted(redis_clean):
    alerts_schedule_ensure()
    [lost] = scheduled_ids()
    Job.fetch(lost, connection=redis_clean).delete()

    assert alerts_schedule_ensure() is True
    assert scheduled_ids() != [lost]
    assert len(scheduled_ids()) == 1
