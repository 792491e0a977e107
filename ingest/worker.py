"""The RQ worker class of the Procfile: a SimpleWorker that outlives PostgreSQL and Redis outages.

SimpleWorker runs jobs in its own process (no fork per job: a fork would cost
every job a process start). Around RQ's loop:

- Connection hygiene per job, as Django gives each request: connections that are unusable
  (PostgreSQL restarted) or past CONN_MAX_AGE are closed before and after every job, so the
  first job after a database restart reconnects instead of failing on a dead connection.
- RQ quits its loop when Redis fails in the middle of a job's bookkeeping; this worker then
  waits for Redis to answer and starts its loop again, under the same name.
- Threads that need neither the main loop nor each other:
  - the sweeper, every `INGEST_SWEEP_SECONDS`: enqueues batches left without a live job (Redis
    was down when they arrived, or a worker was killed), applies held events whose order
    appeared in a racing transaction, rejects held events past the holding period. Several
    workers sweeping at once is safe: rows are locked with SKIP LOCKED and a job enqueued twice
    finds its batch done;
  - the heartbeat (ingest/heartbeats.py), every `WORKER_HEARTBEAT_SECONDS`, which also sends
    `worker_beat` for periodic work of other apps (the alert schedule's watchdog);
  - with `--with-scheduler`, RQ's scheduler (moves jobs scheduled with `enqueue_in` to their
    queue when due; one per Redis, by lock). RQ runs it as a child process that dies with the
    first Redis error and is restarted only at the next 10-minute maintenance pass; here it
    is a thread that keeps going through Redis errors.
"""

import logging
import os
import threading
import time
from contextlib import suppress

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection
from redis.exceptions import RedisError
from rq.exceptions import StopRequested
from rq.scheduler import RQScheduler
from rq.worker import SimpleWorker

from core.jobtimes import job_duration_record
from ingest.heartbeats import (
    heartbeat_file_remove,
    heartbeat_file_write,
    heartbeat_make,
    heartbeat_redis_remove,
    heartbeat_redis_write,
    heartbeat_seconds,
)
from ingest.signals import worker_beat
from ingest.sweep import ingest_sweep

logger = logging.getLogger(__name__)

# How long to wait between two checks of Redis while it is away: Redis back, a worker resumes
# within this.
REDIS_RETRY_SECONDS = 0.5


def sweeper_loop(*, interval: float, stop: threading.Event) -> None:
    """Sweep every `interval` seconds until `stop` is set; survive the database or Redis
    being away (the next pass tries again)."""
    while not stop.wait(interval):
        close_old_connections()
        try:
            done = ingest_sweep()
        except (DatabaseError, RedisError) as error:
            logger.warning("ingest sweep skipped: %s", error)
            connection.close()
            continue
        except Exception:
            # Anything else (RQ refusing to delete a job whose execution record Redis lost in a
            # restart, a bug): the next pass tries again; a dead sweeper would strand batches.
            logger.exception("ingest sweep failed")
            connection.close()
            continue
        if any(done.values()):
            logger.info("ingest sweep: %s", done)


class _OutageLog:
    """Log a dependency's loss once and its return once, not every retry."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.lost = False

    def failed(self, error: Exception) -> None:
        if not self.lost:
            logger.warning("%s: Redis unreachable (%s); retrying", self.what, error)
        self.lost = True

    def succeeded(self) -> None:
        if self.lost:
            logger.warning("%s: Redis is back", self.what)
        self.lost = False


def heartbeat_loop(*, worker: "IngestWorker", stop: threading.Event) -> None:
    outage = _OutageLog(f"worker {worker.name} heartbeat")
    while True:
        beat = heartbeat_make(name=worker.name, queues=worker.queue_names())
        try:
            heartbeat_file_write(beat)
        except OSError:
            logger.exception("worker heartbeat file not written")
        try:
            heartbeat_redis_write(beat, worker.connection)
        except RedisError as error:
            outage.failed(error)
        else:
            outage.succeeded()
            for receiver, outcome in worker_beat.send_robust(sender=IngestWorker):
                if isinstance(outcome, Exception):
                    logger.error("worker_beat receiver %s failed: %r", receiver, outcome)
        if stop.wait(heartbeat_seconds()):
            return


def scheduler_loop(*, worker: "IngestWorker", stop: threading.Event) -> None:
    """RQ's scheduler work loop (rq.scheduler.RQScheduler.work), in a thread, through Redis
    errors. The lock makes one scheduler per Redis active; the others take over when its lock
    expires (its worker died)."""
    scheduler = RQScheduler(
        worker.queues, connection=worker.connection, serializer=worker.serializer
    )
    outage = _OutageLog(f"worker {worker.name} scheduler")
    born = False
    try:
        while not stop.is_set():
            try:
                if not born:
                    scheduler.register_birth()
                    born = True
                if scheduler.should_reacquire_locks:
                    scheduler.acquire_locks()
                scheduler.heartbeat()  # re-acquires its locks if Redis lost them
                if scheduler.acquired_locks:
                    scheduler.enqueue_scheduled_jobs()
            except RedisError as error:
                outage.failed(error)
                born = False  # a restarted Redis has lost the scheduler's record
            else:
                outage.succeeded()
            stop.wait(scheduler.interval)
    finally:
        with suppress(RedisError):
            scheduler.release_locks()
            scheduler.register_death()


class IngestWorker(SimpleWorker):
    # Set by SIGTERM/SIGINT: RQ's own flag is only set when the signal finds the worker busy.
    _stop_signalled = False

    def request_stop(self, signum, frame):
        self._stop_signalled = True
        super().request_stop(signum, frame)

    def execute_job(self, job, queue):
        close_old_connections()
        started = time.monotonic()
        try:
            return super().execute_job(job, queue)
        finally:
            close_old_connections()
            with suppress(RedisError):  # a lost sample is not worth failing the job for
                job_duration_record(
                    self.connection, queue=queue.name, seconds=time.monotonic() - started
                )

    def work(self, *args, with_scheduler: bool = False, **kwargs) -> bool:
        """RQ's work loop, started again after Redis failures until a stop is requested.

        A bounded run (burst, max_jobs, max_idle_time) is RQ's own, scheduler included.
        """
        # `rqworker` sets RQ's loggers to INFO (its -v 1) whatever LOGGING says: the setting wins.
        kwargs["logging_level"] = settings.RQ_LOG_LEVEL
        bounded = bool(args) or any(
            kwargs.get(name) not in (None, False) for name in ("burst", "max_jobs", "max_idle_time")
        )
        stop = threading.Event()
        loops = [
            (sweeper_loop, {"interval": settings.INGEST_SWEEP_SECONDS}),
            (heartbeat_loop, {"worker": self}),
        ]
        if with_scheduler and not bounded:
            loops.append((scheduler_loop, {"worker": self}))
        threads = []
        for target, options in loops:
            thread = threading.Thread(
                target=target,
                kwargs={**options, "stop": stop},
                name=target.__name__.replace("_", "-"),
                daemon=True,
            )
            thread.start()
            threads.append(thread)
        try:
            while True:
                try:
                    worked = super().work(
                        *args, with_scheduler=with_scheduler and bounded, **kwargs
                    )
                except RedisError as error:  # from RQ's teardown, Redis being away
                    logger.warning("worker %s lost Redis: %s", self.name, error)
                    worked = False
                if bounded or self._stop_signalled or not self._redis_wait():
                    return worked
                logger.warning("worker %s resumes: Redis answers again", self.name)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=5)
            heartbeat_file_remove(os.getpid())
            with suppress(RedisError):
                heartbeat_redis_remove(self.name, self.connection)

    def _redis_wait(self) -> bool:
        """After RQ's loop quit on an error: wait until Redis answers, then clean up what RQ's
        teardown could not. False if a stop was requested meanwhile."""
        logger.warning("worker %s stopped working; resuming when Redis answers", self.name)
        if self.pubsub_thread is not None:  # RQ's teardown may have failed before stopping it
            self.pubsub_thread.stop()
            self.pubsub_thread = None
        while not self._stop_signalled:
            try:
                self.connection.ping()
                # Marks the old registration dead, or RQ refuses to register this name again.
                self.register_death()
                return True
            except RedisError:
                time.sleep(REDIS_RETRY_SECONDS)
            except StopRequested:  # SIGTERM while idle
                return False
        return False
