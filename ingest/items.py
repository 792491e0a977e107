"""An event on its way through processing (`Item`), and what processing counted."""

import json
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from ingest.models import HeldEvent

APPLIED, DUPLICATE, HELD, REJECTED = "applied", "duplicate", "held", "rejected"


@dataclass(slots=True, eq=False)
class Item:
    """One event on its way through `events_apply`."""

    source_id: int
    source_name: str
    batch_id: UUID
    index: int
    raw: object
    received_at: datetime
    from_csv: bool = False
    # False when the whole body was checked at once and holds no NUL or lone-surrogate escape.
    text_check: bool = True
    held_id: int | None = None  # releasing a held event: its key is already in
    dead_letter_id: int | None = None  # replaying a dead letter
    event: object = None
    outcome: str = ""
    reason_code: str = ""
    reason: str = ""
    keyed: bool = False

    def reject(self, code: str, reason: str) -> None:
        self.outcome, self.reason_code, self.reason = REJECTED, code, reason


@dataclass
class ProcessingSummary:
    applied: int = 0
    duplicates: int = 0
    rejected: int = 0
    held: int = 0
    orders_created: int = 0
    site_codes: set[str] = field(default_factory=set)


def payload_text(raw: object) -> str:
    # ASCII-escaped JSON: storable whatever the event holds (NUL or lone surrogates included).
    return json.dumps(raw, ensure_ascii=True)


def item_from_held(row: HeldEvent) -> Item:
    return Item(
        source_id=row.source_id,
        source_name=row.source.name,
        batch_id=row.batch_id,
        index=row.index,
        raw=json.loads(row.payload),
        received_at=row.received_at,
        held_id=row.pk,
        keyed=True,
    )
