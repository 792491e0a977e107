"""The RQ worker class of the Procfile: a SimpleWorker that also runs the ingest sweeper.

SimpleWorker runs jobs in its own process (no fork per job, BASELINES.md). A daemon thread
sweeps every `INGEST_SWEEP_SECONDS`: it enqueues batches left without a live job (Redis was
down when they arrived, or a worker was killed), applies held events whose order appeared in a
racing transaction, and rejects held events past the holding period. Several workers sweeping
at once is safe: the sweep locks rows with SKIP LOCKED and a job enqueued twice finds its batch
done.
"""

import logging
import threading

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection
from redis.exceptions import RedisError
from rq.worker import SimpleWorker

from ingest.services import ingest_sweep

logger = logging.getLogger(__name__)


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
        if any(done.values()):
            logger.info("ingest sweep: %s", done)


class IngestWorker(SimpleWorker):
    def work(self, *args, **kwargs):
        stop = threading.Event()
        interval = settings.INGEST_SWEEP_SECONDS
        sweeper = threading.Thread(
            target=sweeper_loop,
            kwargs={"interval": interval, "stop": stop},
            name="ingest-sweeper",
            daemon=True,
        )
        sweeper.start()
        try:
            return super().work(*args, **kwargs)
        finally:
            stop.set()
