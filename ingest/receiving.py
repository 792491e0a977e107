"""Receiving a batch: stored durably, then (once committed) its job on the ingest queue."""

import functools
import logging
from functools import partial
from uuid import UUID

import django_rq
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from redis.exceptions import RedisError

from core.queues import INGEST_QUEUE
from core.redis import redis_client
from ingest.models import (
    FeedSource,
    IngestBatch,
)

logger = logging.getLogger(__name__)


def batch_job_id(batch_id: UUID | str) -> str:
    """The RQ job id of a batch: fixed, so the sweeper can find the job without a lookup."""
    return f"ingest-batch-{batch_id}"


def batch_receive(
    *, source: FeedSource, body_format: str, raw_body: str, accepted: int
) -> IngestBatch:
    """Store the batch durably, then (once committed) enqueue its job.

    One INSERT, committed on its own (no BEGIN/COMMIT round trips) unless the caller holds a
    transaction, in which case the job waits for that commit. If Redis is unreachable the batch
    stays queued in the database; the sweeper enqueues it. DatabaseError goes to the caller:
    nothing was kept.
    """
    batch = IngestBatch.objects.create(
        source=source,
        body_format=body_format,
        raw_body=raw_body,
        accepted=accepted,
        received_at=timezone.now(),
    )
    transaction.on_commit(partial(batch_enqueue, batch_id=batch.pk))
    return batch


@functools.cache
def _queue_for(url: str, timeout: float):
    # One per process, keyed by URL so that a changed RQ_QUEUES setting gets its own. Used in
    # the request path (rate limit, enqueue on commit), so no retries: a batch not enqueued
    # stays queued for the sweeper.
    return django_rq.get_queue(
        INGEST_QUEUE, connection=redis_client(url, timeout=timeout, retries=False)
    )


def ingest_queue():
    """The RQ queue of ingest jobs (its `.connection` is the Redis client to reuse)."""
    return _queue_for(
        settings.RQ_QUEUES[INGEST_QUEUE]["URL"], settings.INGEST_REDIS_TIMEOUT_SECONDS
    )


def batch_enqueue(*, batch_id: UUID | str) -> bool:
    """Put the batch's job on the ingest queue; False (logged) if Redis is unreachable."""
    queue = ingest_queue()
    try:
        # On a pipeline of our own RQ writes the job and its queue entry in one round trip
        # (without one it makes two).
        with queue.connection.pipeline() as pipeline:
            queue.enqueue(
                "ingest.jobs.batch_process_job",
                str(batch_id),
                job_id=batch_job_id(batch_id),
                result_ttl=300,
                failure_ttl=7 * 24 * 3600,
                pipeline=pipeline,
            )
            pipeline.execute()
    except RedisError as error:
        logger.warning("batch %s stays queued for the sweeper: %s", batch_id, error)
        return False
    return True
