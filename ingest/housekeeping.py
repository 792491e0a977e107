"""Retention: what the ingest path stores that stops being needed, dropped when it is due.

- Raw batch bodies, `INGEST_BODY_RETENTION_DAYS` (30) after the batch arrived: once a batch is
  done every event in it is applied, held elsewhere, duplicate or a dead letter with its own
  copy, so the body is read by nobody. The batch row and its counts stay (batch polling still
  answers).
- Idempotency keys of applied events, `INGEST_KEY_RETENTION_DAYS` (90) after their batch
  arrived: until then a re-sent event is a duplicate; after, it would be applied again.
- Resolved dead letters (replayed or discarded), `DEAD_LETTER_RETENTION_DAYS` (90) after they
  were resolved: moved whole to the archive table. Open dead letters wait for a person.

- The SLO minute counters, 35 days after their minute (reads need 28 days and a partial day);
  the day counters stay.

Ledger rows (movements) are never deleted, nor are batches, orders or KPI facts.

Each step works in chunks, a transaction each, so that it holds no lock for long and an
interrupted run loses nothing: the next one carries on where it stopped.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from core.scheduling import ScheduledChain
from ingest.models import (
    ArchivedDeadLetter,
    BatchStatus,
    DeadLetter,
    DeadLetterStatus,
    IngestBatch,
    ProcessedEvent,
)
from slos.counters import MINUTE_ROWS_KEPT, slo_minutes_drop

# progress(step, done, total)
Progress = Callable[[str, int, int], None]
BODY_CHUNK = 1000
DEAD_LETTER_CHUNK = 1000
# Keys have no index by batch or by time (each would cost every ingested event an index entry),
# so deleting them scans the keys table: once per day of batches, not once per batch.
KEY_CHUNK = timedelta(days=1)


@dataclass(frozen=True)
class HousekeepingReport:
    bodies_dropped: int
    key_batches: int
    keys_dropped: int
    dead_letters_archived: int
    slo_minutes_dropped: int = 0

    def lines(self) -> list[str]:
        return [
            f"raw bodies dropped: {self.bodies_dropped:,} batches "
            f"(received more than {settings.INGEST_BODY_RETENTION_DAYS} days ago)",
            f"idempotency keys dropped: {self.keys_dropped:,} of {self.key_batches:,} batches "
            f"(received more than {settings.INGEST_KEY_RETENTION_DAYS} days ago)",
            f"dead letters archived: {self.dead_letters_archived:,} "
            f"(resolved more than {settings.DEAD_LETTER_RETENTION_DAYS} days ago)",
            f"SLO minute counters dropped: {self.slo_minutes_dropped:,} "
            f"(older than {MINUTE_ROWS_KEPT.days} days; day counters are kept)",
        ]


def _no_progress(step: str, done: int, total: int) -> None:
    pass


def _settled_batches(*, received_before: datetime):
    """Batches done with nothing held: no worker will read them again."""
    return IngestBatch.objects.filter(
        received_at__lt=received_before, status=BatchStatus.DONE, held=0
    )


def batch_bodies_drop(*, received_before: datetime, progress: Progress = _no_progress) -> int:
    """Empty the raw body of every settled batch received before `received_before`."""
    due = _settled_batches(received_before=received_before).filter(body_dropped_at=None)
    total, dropped = due.count(), 0
    progress("raw bodies", 0, total)
    while True:
        with transaction.atomic():
            ids = list(due.order_by("received_at").values_list("pk", flat=True)[:BODY_CHUNK])
            if not ids:
                break
            dropped += IngestBatch.objects.filter(pk__in=ids).update(
                raw_body="", body_dropped_at=timezone.now()
            )
        progress("raw bodies", min(dropped, total), total)
    return dropped


def event_keys_drop(
    *, received_before: datetime, progress: Progress = _no_progress
) -> tuple[int, int]:
    """Delete the idempotency keys of settled batches received before `received_before`, a
    day of batches at a time; return (batches, keys)."""
    due = _settled_batches(received_before=received_before).filter(keys_dropped_at=None)
    oldest = due.order_by("received_at").values_list("received_at", flat=True).first()
    if oldest is None:
        progress("keys", 0, 0)
        return 0, 0
    days = int((received_before - oldest) / KEY_CHUNK) + 1
    batches = keys = 0
    for day in range(days):
        start = oldest + day * KEY_CHUNK
        end = min(start + KEY_CHUNK, received_before)
        with transaction.atomic():
            stamp = timezone.now()
            batches += due.filter(received_at__gte=start, received_at__lt=end).update(
                keys_dropped_at=stamp
            )
            marked = IngestBatch.objects.filter(
                keys_dropped_at=stamp, received_at__gte=start, received_at__lt=end
            )
            keys += ProcessedEvent.objects.filter(batch__in=marked.values("pk")).delete()[0]
        progress("keys", day + 1, days)
    return batches, keys


def dead_letters_archive(*, resolved_before: datetime, progress: Progress = _no_progress) -> int:
    """Move dead letters replayed or discarded before `resolved_before` to the archive."""
    due = DeadLetter.objects.filter(
        Q(status=DeadLetterStatus.REPLAYED, replayed_at__lt=resolved_before)
        | Q(status=DeadLetterStatus.DISCARDED, discarded_at__lt=resolved_before)
    )
    total, archived = due.count(), 0
    progress("dead letters", 0, total)
    while True:
        with transaction.atomic():
            rows = list(due.order_by("pk").select_for_update(skip_locked=True)[:DEAD_LETTER_CHUNK])
            if not rows:
                break
            archived_at = timezone.now()
            ArchivedDeadLetter.objects.bulk_create(
                [_archived(row, archived_at=archived_at) for row in rows]
            )
            DeadLetter.objects.filter(pk__in=[row.pk for row in rows]).delete()
            archived += len(rows)
        progress("dead letters", min(archived, total), total)
    return archived


def _archived(row: DeadLetter, *, archived_at: datetime) -> ArchivedDeadLetter:
    return ArchivedDeadLetter(
        dead_letter_id=row.pk,
        source_id=row.source_id,
        batch_id=row.batch_id,
        index=row.index,
        event_id=row.event_id,
        payload=row.payload,
        reason_code=row.reason_code,
        reason=row.reason,
        status=row.status,
        created_at=row.created_at,
        resolved_at=row.replayed_at
        if row.status == DeadLetterStatus.REPLAYED
        else row.discarded_at,
        replay_count=row.replay_count,
        replay_outcome=row.replay_outcome,
        handled_by_id=row.handled_by_id,
        discard_note=row.discard_note,
        archived_at=archived_at,
    )


def housekeeping_run(
    *, now: datetime | None = None, progress: Progress = _no_progress
) -> HousekeepingReport:
    """Drop or archive everything past its retention setting; say what was done."""
    now = now or timezone.now()
    bodies = batch_bodies_drop(
        received_before=now - timedelta(days=settings.INGEST_BODY_RETENTION_DAYS),
        progress=progress,
    )
    key_batches, keys = event_keys_drop(
        received_before=now - timedelta(days=settings.INGEST_KEY_RETENTION_DAYS),
        progress=progress,
    )
    dead_letters = dead_letters_archive(
        resolved_before=now - timedelta(days=settings.DEAD_LETTER_RETENTION_DAYS),
        progress=progress,
    )
    return HousekeepingReport(
        bodies_dropped=bodies,
        key_batches=key_batches,
        keys_dropped=keys,
        dead_letters_archived=dead_letters,
        slo_minutes_dropped=slo_minutes_drop(now=now),
    )


HOUSEKEEPING_CHAIN = ScheduledChain(
    name="housekeeping",
    job="ingest.jobs.housekeeping_scheduled_job",
    owner_key="ingest:housekeeping:scheduled-job",
    lock_key="ingest:housekeeping:schedule-ensure-lock",
    interval=lambda: max(60, settings.HOUSEKEEPING_INTERVAL_SECONDS),
    job_timeout=lambda: 6 * 3600,
)


def housekeeping_schedule_ensure() -> bool | None:
    """Start the periodic housekeeping chain if it is not running: True if it had to be, False
    if it was, None if Redis did not answer. Called by the release step and by every scheduled
    alert evaluation (a chain that everything keeps alive), so a lost chain is back within a
    minute."""
    return HOUSEKEEPING_CHAIN.ensure()
