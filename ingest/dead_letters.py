"""Dead letters: replayed through processing, or discarded with a note."""

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from django.db.models import F
from django.utils import timezone

from core.db import run_atomic_with_retry
from ingest.exceptions import NoteRequired
from ingest.items import APPLIED, DUPLICATE, HELD, REJECTED, Item
from ingest.models import (
    DeadLetter,
    DeadLetterStatus,
)
from ingest.processing import events_apply


@dataclass(frozen=True)
class ReplaySummary:
    """What a replay did: every dead letter asked for lands in exactly one count."""

    applied: int = 0
    duplicates: int = 0
    held: int = 0
    still_rejected: int = 0
    skipped: int = 0  # not open (already replayed or discarded) or unknown id


def dead_letters_replay(*, dead_letter_ids: Sequence[int], actor) -> ReplaySummary:
    """Run open dead letters through the same path as new events, once their cause is fixed.

    Applied, duplicate or held ones become `replayed`; still rejected ones stay open with the
    current reason. `actor` is the user who asked (recorded as `handled_by`).
    """
    ids = sorted(set(dead_letter_ids))

    def replay() -> ReplaySummary:
        rows = list(
            DeadLetter.objects.select_for_update(of=("self",))
            .select_related("source")
            .filter(pk__in=ids, status=DeadLetterStatus.OPEN)
            .order_by("pk")
        )
        items = [
            Item(
                source_id=row.source_id,
                source_name=row.source.name,
                batch_id=row.batch_id,
                index=row.index,
                raw=json.loads(row.payload),
                received_at=row.created_at,
                dead_letter_id=row.pk,
            )
            for row in rows
        ]
        events_apply(items)
        DeadLetter.objects.filter(pk__in=[row.pk for row in rows]).update(
            replay_count=F("replay_count") + 1, handled_by=actor
        )
        outcomes = defaultdict(int)
        for item in items:
            outcomes[item.outcome] += 1
        return ReplaySummary(
            applied=outcomes[APPLIED],
            duplicates=outcomes[DUPLICATE],
            held=outcomes[HELD],
            still_rejected=outcomes[REJECTED],
            skipped=len(ids) - len(rows),
        )

    return run_atomic_with_retry(replay)


def dead_letters_discard(*, dead_letter_ids: Sequence[int], actor, note: str) -> int:
    """Mark open dead letters discarded with a note (required); return how many changed."""
    note = note.strip()
    if not note:
        raise NoteRequired("say why these dead letters are discarded (a note is required)")
    now = timezone.now()
    return DeadLetter.objects.filter(
        pk__in=list(dead_letter_ids), status=DeadLetterStatus.OPEN
    ).update(
        status=DeadLetterStatus.DISCARDED,
        discarded_at=now,
        discard_note=note,
        handled_by=actor,
        updated_at=now,
    )
