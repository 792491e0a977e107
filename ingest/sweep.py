"""Held events (released when their order arrives, expired after the hold) and the sweeper that
enqueues again batches left without a live job.
"""

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone
from rq.job import Job, JobStatus

from core.db import run_atomic_with_retry
from ingest.items import item_from_held
from ingest.keys import keys_release
from ingest.models import (
    BatchStatus,
    HeldEvent,
    IngestBatch,
    Order,
    RejectionCode,
)
from ingest.processing import held_events_release
from ingest.receiving import batch_enqueue, batch_job_id, ingest_queue
from ingest.settle import (
    dead_letters_write,
    held_events_write,
    hold_seconds,
    origin_counters_update,
)
from ingest.validation import events_validate

logger = logging.getLogger(__name__)


def held_events_expire(*, now: datetime | None = None, limit: int = 1000) -> int:
    """Reject held events still waiting after the holding period ("unknown order")."""
    now = now or timezone.now()

    def expire() -> int:
        rows = list(
            HeldEvent.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(held_until__lte=now)
            # NOT EXISTS probes the order's unique index per held row; NOT IN hashed every
            # order on each sweep.
            .filter(~Exists(Order.objects.filter(order_id=OuterRef("order_id"))))
            .select_related("source")
            .order_by("pk")[:limit]
        )
        if not rows:
            return 0
        items = [item_from_held(row) for row in rows]
        hours = hold_seconds() / 3600
        for item, row in zip(items, rows, strict=True):
            events_validate([item])
            item.reject(
                RejectionCode.UNKNOWN_ORDER,
                f"order_id: unknown order {row.order_id!r} (still unknown after {hours:g} h)",
            )
        keys_release([item for item in items if item.event is not None])
        for item in items:
            item.keyed = False
        held_events_write(items)
        dead_letters_write(items)
        origin_counters_update(items)
        return len(items)

    return run_atomic_with_retry(expire)


def batches_sweep(*, now: datetime | None = None, limit: int = 500) -> int:
    """Enqueue batches not done that have no live job (Redis was down, a worker was killed).

    Batches being processed are row-locked by their worker and skipped; a batch whose job
    waits in the queue is left alone. A job enqueued twice is harmless: the second finds the
    batch done.
    """
    now = now or timezone.now()
    with transaction.atomic():
        candidates = list(
            IngestBatch.objects.select_for_update(skip_locked=True)
            .exclude(status=BatchStatus.DONE)
            .filter(received_at__lte=now - timedelta(seconds=settings.INGEST_SWEEP_GRACE_SECONDS))
            .order_by("received_at")
            .values_list("pk", flat=True)[:limit]
        )
    if not candidates:
        return 0
    redis = ingest_queue().connection
    jobs = Job.fetch_many([batch_job_id(pk) for pk in candidates], connection=redis)
    waiting = {JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED}
    enqueued = 0
    for batch_id, job in zip(candidates, jobs, strict=True):
        if job is not None and job.get_status(refresh=False) in waiting:
            continue
        if job is not None:
            job.delete()
        if batch_enqueue(batch_id=batch_id):
            enqueued += 1
    if enqueued:
        logger.info("sweeper enqueued %d batch(es) again", enqueued)
    return enqueued


def ingest_sweep(*, now: datetime | None = None) -> dict[str, int]:
    """One pass of the sweeper: stale batches, held events to release or expire."""
    return {
        "batches_enqueued": batches_sweep(now=now),
        "held_released": held_events_release(),
        "held_expired": held_events_expire(now=now),
    }
