"""Counting good and total events of each SLO, a few rows a minute whatever the traffic.

Two ways in:
- `slo_count_after_commit`: the writers (ingest's apply, the snapshot comparison) count what
  they just did once their transaction commits, in a statement of its own. Counting inside the
  writer's transaction would make concurrent workers wait on each other's lock of the same
  minute row until each commit; counting after it costs one short upsert a batch. A process
  killed between its commit and the count loses that count: the SLI is a measure, not a ledger.
- `IngestAnswerCounter`: the web process counts ingest answers in memory and writes them every
  few seconds. The answers that matter most are the 503s given because the database is away,
  and those cannot be written when they happen: they wait in memory (one entry a minute) and
  are written when the database answers again.
"""

import logging
import threading
import time
from collections.abc import Iterable
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import partial

from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from core.db import datetime_param
from slos.models import DAY_S, MINUTE_S, Slo, SloCount

logger = logging.getLogger(__name__)

# (slo, minute start in epoch seconds) -> [good, total]
Counts = dict[tuple[str, int], list[int]]


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def slo_counts_write(counts: Counts) -> None:
    """Add the counts to their minute and day rows (one upsert, keys in a fixed order)."""
    rows: dict[tuple[str, int, int], list[int]] = {}
    for (slo, minute), (good, total) in counts.items():
        for span in (MINUTE_S, DAY_S):
            key = (slo, span, minute - minute % span)
            row = rows.setdefault(key, [0, 0])
            row[0] += good
            row[1] += total
    if not rows:
        return
    table = SloCount._meta.db_table
    placeholders = ", ".join(["(%s, %s, %s, %s, %s)"] * len(rows))
    params: list = []
    for (slo, span, start), (good, total) in sorted(rows.items()):
        params += [slo, span, datetime_param(datetime.fromtimestamp(start, UTC)), good, total]
    with connection.cursor() as cursor:
        # Only our own table and column names are interpolated; values are parameters.
        cursor.execute(
            f"INSERT INTO {table} (slo, span_s, start, good, total) "  # noqa: S608
            f"VALUES {placeholders} ON CONFLICT (slo, span_s, start) DO UPDATE SET "
            f"good = {table}.good + excluded.good, total = {table}.total + excluded.total",
            params,
        )


def slo_count(slo: Slo | str, *, good: int, total: int, at: datetime | None = None) -> None:
    """Count `good` out of `total` events of `slo` now (or at `at`), in the current transaction."""
    if total <= 0:
        return
    minute = _epoch(at or timezone.now()) // MINUTE_S * MINUTE_S
    slo_counts_write({(str(slo), minute): [good, total]})


@contextmanager
def _counting_transaction():
    """A transaction of its own that does not wait for the disk at commit (PostgreSQL): a
    crash may lose the last fraction of a second of counts, and the writer's batch does not
    pay a second flush to disk for its SLI."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit TO OFF")
        yield


def _count_safely(slo: str, good: int, total: int, at: datetime) -> None:
    try:
        with _counting_transaction():
            slo_count(slo, good=good, total=total, at=at)
    except DatabaseError:
        # The writer's work stands; losing a count only makes the SLI a little less exact.
        logger.warning("could not count %s/%s for the %s SLO", good, total, slo, exc_info=True)


def slo_count_after_commit(slo: Slo | str, *, good: int, total: int) -> None:
    """Count once the current transaction commits (at once outside one); never raises."""
    if total > 0:
        transaction.on_commit(
            partial(_count_safely, str(slo), good, total, timezone.now()), robust=True
        )


def slo_count_lines(slo: Slo | str, outcomes: Iterable[bool]) -> None:
    """`slo_count_after_commit` of a sequence of good (True) and bad (False) outcomes."""
    outcomes = list(outcomes)
    slo_count_after_commit(slo, good=sum(outcomes), total=len(outcomes))


class IngestAnswerCounter:
    """Ingest POST answers of this process, kept in memory and written every `flush_s`."""

    def __init__(self, *, flush_s: float = 5.0, retry_s: float = 5.0) -> None:
        self.flush_s = flush_s
        self.retry_s = retry_s
        self._lock = threading.Lock()
        self._pending: Counts = {}
        self._next_flush = 0.0

    def answer_count(self, status: int, *, at: datetime | None = None) -> None:
        minute = _epoch(at or timezone.now()) // MINUTE_S * MINUTE_S
        with self._lock:
            row = self._pending.setdefault((Slo.INGEST_AVAILABILITY.value, minute), [0, 0])
            row[0] += status < 500
            row[1] += 1

    def pending(self) -> Counts:
        with self._lock:
            return {key: list(value) for key, value in self._pending.items()}

    def flush_if_due(self) -> None:
        """Flush if there is something to write and the interval has passed (no query else)."""
        if self._pending and time.monotonic() >= self._next_flush:
            self.flush()

    def flush(self) -> bool:
        """Write what is pending; on failure keep it for the next try. True if all written."""
        with self._lock:
            counts, self._pending = self._pending, {}
        if not counts:
            self._next_flush = time.monotonic() + self.flush_s
            return True
        try:
            with _counting_transaction():
                slo_counts_write(counts)
        except DatabaseError as error:
            logger.warning("ingest answers not counted yet (kept in memory): %s", error)
            with self._lock:
                for key, (good, total) in counts.items():
                    row = self._pending.setdefault(key, [0, 0])
                    row[0] += good
                    row[1] += total
            self._next_flush = time.monotonic() + self.retry_s
            return False
        self._next_flush = time.monotonic() + self.flush_s
        return True


ingest_answers = IngestAnswerCounter()


# Minute rows are read for at most 28 days and a partial one (the 28-day window's first day);
# kept a week longer. Day rows stay: a few a day, the long history of each SLO.
MINUTE_ROWS_KEPT = timedelta(days=35)
MINUTE_ROWS_CHUNK = 10_000


def slo_minutes_drop(*, now: datetime | None = None) -> int:
    """Delete minute counters no read needs any more, in chunks; return how many."""
    before = (now or timezone.now()) - MINUTE_ROWS_KEPT
    dropped = 0
    while True:
        with transaction.atomic():
            chunk = list(
                SloCount.objects.filter(span_s=MINUTE_S, start__lt=before).values_list(
                    "pk", flat=True
                )[:MINUTE_ROWS_CHUNK]
            )
            if not chunk:
                return dropped
            SloCount.objects.filter(pk__in=chunk).delete()
        dropped += len(chunk)
