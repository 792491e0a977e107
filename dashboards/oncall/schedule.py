"""The scheduled alert evaluation: a chain of RQ jobs scheduled with `enqueue_in`.

Why a chain and not a separate clock process: SPEC.md fixes the Procfile to `web`, `worker`
and `simulator`, and the `worker` line already runs RQ's scheduler (`--with-scheduler`), which
moves jobs scheduled with `enqueue_in` to their queue when due (one scheduler per Redis, however
many workers).

How the chain stays single and alive:
- Redis key SCHEDULED_JOB_KEY holds the id of the one job that owns the chain.
- Each run checks it is that job; if so it schedules its successor first (so a failure while
  evaluating cannot break the chain), hands the key to it, then evaluates. A run that is not
  the owner (a duplicate, after an outage) evaluates nothing and schedules nothing.
- `alerts_schedule_ensure` restarts the chain when the owner job no longer exists (Redis
  flushed, job lost). It is called by every event-driven evaluation job, by the console page
  and by `load_runbooks` (so `make run` / `load_demo` start it).
"""

import logging
import os
from datetime import timedelta

import django_rq
from redis.exceptions import RedisError
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus, get_current_job

logger = logging.getLogger(__name__)

QUEUE = "default"
SCHEDULED_JOB_KEY = "oncall:alerts:scheduled-job"
ENSURE_LOCK_KEY = "oncall:alerts:schedule-ensure-lock"
LIVE_STATUSES = {JobStatus.SCHEDULED, JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED}


def evaluation_interval() -> int:
    return max(1, int(os.environ.get("ALERTS_EVALUATION_INTERVAL", "60")))


def _successor_schedule(connection) -> Job:
    from dashboards.oncall.jobs import alerts_scheduled_evaluation_job

    interval = evaluation_interval()
    queue = django_rq.get_queue(QUEUE, commit_mode="auto")
    job = queue.enqueue_in(
        timedelta(seconds=interval),
        alerts_scheduled_evaluation_job,
        job_timeout=interval * 5,
        result_ttl=interval * 2,
        failure_ttl=3600,
    )
    connection.set(SCHEDULED_JOB_KEY, job.id)
    return job


def alerts_schedule_ensure() -> bool:
    """Start the chain if no live job owns it; return True if it had to be started."""
    try:
        connection = django_rq.get_connection(QUEUE)
        owner = connection.get(SCHEDULED_JOB_KEY)
        if owner and _is_live(owner.decode() if isinstance(owner, bytes) else owner, connection):
            return False
        # Two callers may find it dead at once: only the lock holder starts a new chain.
        if not connection.set(ENSURE_LOCK_KEY, 1, nx=True, ex=10):
            return False
        try:
            _successor_schedule(connection)
        finally:
            connection.delete(ENSURE_LOCK_KEY)
        logger.info("scheduled alert evaluation (re)started")
        return True
    except RedisError as error:
        logger.warning("cannot ensure the scheduled alert evaluation: %s", error)
        return False


def _is_live(job_id: str, connection) -> bool:
    try:
        return Job.fetch(job_id, connection=connection).get_status() in LIVE_STATUSES
    except NoSuchJobError:
        return False


def scheduled_run_claim() -> bool:
    """In a scheduled job: if this job owns the chain, schedule its successor and return True."""
    connection = django_rq.get_connection(QUEUE)
    current = get_current_job()
    owner = connection.get(SCHEDULED_JOB_KEY)
    owner = owner.decode() if isinstance(owner, bytes) else owner
    if current is None or owner != current.id:
        logger.info("scheduled alert evaluation %s is not the chain's owner: skipped", current)
        return False
    _successor_schedule(connection)
    return True
