"""Periodic jobs as chains of RQ jobs scheduled with `enqueue_in`.

Why a chain and not a separate clock process: the Procfile's `worker` line already runs RQ's
scheduler (`--with-scheduler`), which moves jobs scheduled with `enqueue_in` to their queue when
due (one scheduler per Redis, however many workers).

How a chain stays single and alive:
- a Redis key holds the id of the one job that owns the chain;
- each run checks it is that job (`claim`); if so it schedules its successor first (so a
  failure while working cannot break the chain), hands the key to it, then works. A run that is
  not the owner (a duplicate, after an outage) does nothing and schedules nothing;
- `ensure` starts the chain when the owner job no longer exists (Redis flushed, job lost).

Jobs are named by dotted path, so this module imports none of them.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import django_rq
from redis.exceptions import RedisError
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus, get_current_job

logger = logging.getLogger(__name__)

LIVE_STATUSES = {JobStatus.SCHEDULED, JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED}


@dataclass(frozen=True)
class ScheduledChain:
    name: str  # for logs
    job: str  # dotted path of the job function
    owner_key: str  # Redis key holding the owner job's id
    lock_key: str  # Redis key taken while (re)starting the chain
    interval: Callable[[], int]  # seconds between runs
    job_timeout: Callable[[], int]
    queue: str = "default"

    def ensure(self) -> bool | None:
        """Start the chain if no live job owns it; return True if it had to be started, False
        if it was running, None if Redis could not be asked (logged)."""
        try:
            connection = django_rq.get_connection(self.queue)
            owner = _text(connection.get(self.owner_key))
            if owner and _is_live(owner, connection):
                return False
            # Two callers may find it dead at once: only the lock holder starts a new chain.
            if not connection.set(self.lock_key, 1, nx=True, ex=10):
                return False
            try:
                self._successor_schedule(connection)
            finally:
                connection.delete(self.lock_key)
            logger.info("scheduled %s (re)started", self.name)
            return True
        except RedisError as error:
            logger.warning("cannot ensure the scheduled %s: %s", self.name, error)
            return None

    def claim(self) -> bool:
        """In a scheduled job: if this job owns the chain, schedule its successor and return
        True."""
        connection = django_rq.get_connection(self.queue)
        current = get_current_job()
        owner = _text(connection.get(self.owner_key))
        if current is None or owner != current.id:
            logger.info("scheduled %s %s is not the chain's owner: skipped", self.name, current)
            return False
        self._successor_schedule(connection)
        return True

    def _successor_schedule(self, connection) -> Job:
        interval = self.interval()
        queue = django_rq.get_queue(self.queue, commit_mode="auto")
        job = queue.enqueue_in(
            timedelta(seconds=interval),
            self.job,
            job_timeout=self.job_timeout(),
            result_ttl=interval * 2,
            failure_ttl=max(3600, interval * 2),
        )
        connection.set(self.owner_key, job.id)
        return job


def _text(value) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def _is_live(job_id: str, connection) -> bool:
    try:
        return Job.fetch(job_id, connection=connection).get_status() in LIVE_STATUSES
    except NoSuchJobError:
        return False
