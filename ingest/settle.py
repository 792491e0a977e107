"""Writing what processing decided, in bulk: orders, held events, dead letters, counters and
feed freshness.
"""

from collections import defaultdict
from datetime import datetime, timedelta
from uuid import UUID

from django.conf import settings
from django.db.models import F
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from ingest.items import APPLIED, DUPLICATE, HELD, REJECTED, Item, payload_text
from ingest.models import (
    DeadLetter,
    DeadLetterStatus,
    FeedSource,
    HeldEvent,
    IngestBatch,
)
from ingest.validation import text_problem
from slos.counters import slo_count_lines
from slos.models import Slo

DEFAULT_HOLD_SECONDS = 24 * 3600
# The freshness SLO's bound between receiving an event and applying it.
FRESH_WITHIN = timedelta(seconds=60)


def hold_seconds() -> int:
    return int(getattr(settings, "INGEST_HOLD_SECONDS", DEFAULT_HOLD_SECONDS))


def held_events_write(items: list[Item]) -> None:
    now = timezone.now()
    held_until = now + timedelta(seconds=hold_seconds())
    new_holds = [
        HeldEvent(
            source_id=item.source_id,
            batch_id=item.batch_id,
            index=item.index,
            event_id=item.event.event_id,
            order_id=item.event.order_id,
            payload=payload_text(item.raw),
            received_at=item.received_at,
            held_until=held_until,
        )
        for item in items
        if item.outcome == HELD and item.held_id is None
    ]
    HeldEvent.objects.bulk_create(new_holds, batch_size=1000)
    settled = [item.held_id for item in items if item.held_id is not None and item.outcome]
    if settled:
        HeldEvent.objects.filter(pk__in=settled).delete()


def raw_event_id(raw: object) -> str:
    event_id = raw.get("event_id") if isinstance(raw, dict) else None
    if not isinstance(event_id, str) or text_problem(event_id):
        return ""
    return event_id[:200]


def dead_letters_write(items: list[Item]) -> None:
    now = timezone.now()
    fresh = [
        DeadLetter(
            source_id=item.source_id,
            batch_id=item.batch_id,
            index=item.index,
            event_id=raw_event_id(item.raw),
            payload=payload_text(item.raw),
            reason_code=item.reason_code,
            reason=item.reason,
        )
        for item in items
        if item.outcome == REJECTED and item.dead_letter_id is None
    ]
    DeadLetter.objects.bulk_create(fresh, batch_size=1000)
    for item in items:
        if item.dead_letter_id is None or not item.outcome:
            continue
        if item.outcome == REJECTED:
            DeadLetter.objects.filter(pk=item.dead_letter_id).update(
                reason_code=item.reason_code, reason=item.reason, updated_at=now
            )
        else:
            DeadLetter.objects.filter(pk=item.dead_letter_id).update(
                status=DeadLetterStatus.REPLAYED,
                replay_outcome=item.outcome,
                replayed_at=now,
                updated_at=now,
            )


def origin_counters_update(items: list[Item]) -> None:
    """Move the counts of earlier batches whose held events or dead letters were settled now."""
    deltas: dict[UUID, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    column = {APPLIED: "applied", DUPLICATE: "duplicates", REJECTED: "rejected", HELD: "held"}
    for item in items:
        if not item.outcome:
            continue
        if item.held_id is not None:
            before = "held"
        elif item.dead_letter_id is not None:
            before = "rejected"
        else:
            continue
        after = column[item.outcome]
        if after != before:
            deltas[item.batch_id][before] -= 1
            deltas[item.batch_id][after] += 1
    for batch_id in sorted(deltas):
        changes = {name: F(name) + delta for name, delta in deltas[batch_id].items() if delta}
        if changes:
            IngestBatch.objects.filter(pk=batch_id).update(**changes)


def freshness_update(items: list[Item]) -> None:
    by_source: dict[int, list[datetime]] = defaultdict(list)
    applied_at = timezone.now()
    fresh = []
    for item in items:
        if item.outcome == APPLIED:
            by_source[item.source_id].append(item.event.occurred_at)
            if item.dead_letter_id is None:
                fresh.append(applied_at - item.received_at <= FRESH_WITHIN)
    # The freshness SLO: each event applied, good when within a minute of its receipt. A
    # replayed dead letter is left out: it was answered (rejected) in time, and an operator
    # replaying last week's fixes must not look like today's lag.
    slo_count_lines(Slo.FRESHNESS, fresh)
    newest = {source_id: max(times) for source_id, times in by_source.items()}
    # Last in the transaction: the source row stays locked only until the commit.
    for source_id in sorted(newest):
        FeedSource.objects.filter(pk=source_id).update(
            newest_applied_occurred_at=Greatest(
                Coalesce(F("newest_applied_occurred_at"), newest[source_id]), newest[source_id]
            )
        )
