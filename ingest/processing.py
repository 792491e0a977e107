"""Writes of the ingest domain: feed sources, batches, applying events, dead letters.

How a batch becomes ledger movements (`batch_process`), in one transaction:
1. every event is validated with pydantic; bad ones are rejected with the field named;
2. site and SKU codes are resolved in bulk; unknown codes reject the event, not the batch;
3. the idempotency keys `(source, event_id)` are inserted in bulk with ON CONFLICT DO NOTHING:
   a key that exists (re-send, retried job, racing worker) makes the event a duplicate;
4. order events are planned against the orders, locked in key order; an event whose order is
   not known yet is held, and applied as soon as its `order.created` is;
5. orders, dead letters, held events and counters are written in bulk, then all movements go
   to `movements_record` in one call and the KPI facts to `rollups_facts_record` (the
   stock-level and stock status locks are then held only until the commit); snapshots are
   compared with the stock at their place among the events (docs/ingest.md).

A worker's job may apply several queued batches in one such transaction (`batch_process` with
`group_events`): their events go through these steps together, each batch keeps its counts.
"""

import gc
import logging
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from uuid import UUID

from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import F
from django.utils import timezone

from core.db import run_atomic_with_retry
from core.notify import stock_changed_notify
from ingest.items import (
    APPLIED,
    DUPLICATE,
    HELD,
    REJECTED,
    Item,
    ProcessingSummary,
    item_from_held,
    payload_text,
)
from ingest.keys import keys_claim, keys_release
from ingest.models import (
    BatchStatus,
    DeadLetter,
    HeldEvent,
    IngestBatch,
    Order,
    RejectionCode,
)
from ingest.order_plan import OrderPlan, snapshots_at_their_position
from ingest.parsing import events_parse
from ingest.settle import (
    dead_letters_write,
    freshness_update,
    held_events_write,
    origin_counters_update,
    raw_event_id,
)
from ingest.validation import UNSTORABLE_ESCAPE, catalog_resolve, events_validate
from kpis.rollups import rollups_facts_record
from ledger.services import movements_record

logger = logging.getLogger(__name__)


GROUP_MAX_BATCHES = 100  # queued batches looked at when grouping (their events bound it first)


def batch_process(*, batch_id: UUID | str, group_events: int = 0) -> dict:
    """Apply one stored batch; safe to run twice or concurrently (the second finds it done or
    being applied, and leaves it).

    With `group_events`, batches still queued are applied with it in the same transaction,
    oldest first, up to that many events in all (the worker's job does this, see
    docs/ingest.md): each keeps its own status, counts and rejections, and their own jobs
    later find them done.
    """
    batch_id = batch_id if isinstance(batch_id, UUID) else _uuid_or_none(batch_id)
    group, attempt = _batches_claim(batch_id, group_events=group_events) if batch_id else ([], 0)
    if batch_id not in group:
        return {"batch_id": str(batch_id), "status": "already done, unknown or being applied"}
    if attempt > settings.INGEST_MAX_ATTEMPTS:
        # Every earlier attempt was started and never finished nor failed: its worker died
        # (killed, out of memory) while applying it. Retrying forever would kill every worker.
        logger.error("batch %s was interrupted %d times: dead letters", batch_id, attempt - 1)
        failed = run_atomic_with_retry(
            partial(
                _batch_give_up,
                batch_id,
                reason=f"processing was started {attempt - 1} times and never finished (the "
                "worker stopped while applying it, e.g. killed or out of memory)",
            )
        )
        return {"batch_id": str(batch_id), "status": "done", "rejected": failed}
    if len(group) > 1:
        try:
            counts = run_atomic_with_retry(partial(_batches_process_in_transaction, group))
        except Exception:
            # One of them may be poisoned: apply each alone, so the others still go through
            # and only the culprit's own job counts failed attempts.
            logger.exception("a group of %d batches failed: applying each alone", len(group))
            for other_id in group[1:]:
                try:
                    run_atomic_with_retry(partial(_batches_process_in_transaction, [other_id]))
                except Exception:
                    logger.exception("batch %s failed: its job or the sweeper retries it", other_id)
        else:
            return _job_result(batch_id, counts, grouped_with=len(group) - 1)
    try:
        counts = run_atomic_with_retry(partial(_batches_process_in_transaction, [batch_id]))
    except Exception as error:
        attempts = IngestBatch.objects.filter(pk=batch_id).values_list("attempts", flat=True)
        if not attempts or attempts[0] < settings.INGEST_MAX_ATTEMPTS:
            raise  # the job fails; the sweeper enqueues the batch again
        logger.exception(
            "batch %s failed %d times: its events become dead letters", batch_id, attempts[0]
        )
        failed = run_atomic_with_retry(
            partial(
                _batch_give_up, batch_id, reason=f"processing failed {attempts[0]} times: {error}"
            )
        )
        return {"batch_id": str(batch_id), "status": "done", "rejected": failed}
    return _job_result(batch_id, counts)


def _job_result(batch_id: UUID, counts: dict[UUID, dict[str, int]], **extra) -> dict:
    if batch_id not in counts:
        # Locked by another worker's group between our claim and our transaction.
        return {"batch_id": str(batch_id), "status": "being applied by another worker"}
    return {"batch_id": str(batch_id), "status": "done", **extra, **counts[batch_id]}


def _uuid_or_none(value) -> UUID | None:
    try:
        return UUID(str(value))
    except ValueError:
        return None


def _batches_claim(batch_id: UUID, *, group_events: int) -> tuple[list[UUID], int]:
    """Mark the batch (one more attempt) and queued ones to group with it `processing`, in a
    short transaction of its own: the attempt counts even if the work then rolls back or the
    worker dies, and producers see that their batch was started. Return the group, this batch
    first, and this attempt's number; no group if it is done, unknown, or locked by a worker
    applying it now (SKIP LOCKED: no waiting).
    """
    now = timezone.now()
    with transaction.atomic():
        own = list(
            IngestBatch.objects.select_for_update(skip_locked=True)
            .filter(pk=batch_id)
            .exclude(status=BatchStatus.DONE)
            .values_list("accepted", "attempts")
        )
        if not own:
            return [], 0
        accepted, attempts_before = own[0]
        attempt = attempts_before + 1
        group = [batch_id]
        budget = group_events - accepted if attempt <= settings.INGEST_MAX_ATTEMPTS else 0
        if budget > 0:
            queued = (
                IngestBatch.objects.select_for_update(skip_locked=True)
                .filter(status=BatchStatus.QUEUED)
                .exclude(pk=batch_id)
                .order_by("received_at")
                .values_list("pk", "accepted")[:GROUP_MAX_BATCHES]
            )
            for other_id, accepted in queued:
                if accepted > budget:
                    break
                group.append(other_id)
                budget -= accepted
        IngestBatch.objects.filter(pk=batch_id).update(
            status=BatchStatus.PROCESSING, started_at=now, attempts=F("attempts") + 1
        )
        if len(group) > 1:
            IngestBatch.objects.filter(pk__in=group[1:]).update(
                status=BatchStatus.PROCESSING, started_at=now
            )
    return group, attempt


def _batch_give_up(batch_id, *, reason: str) -> int:
    """Finish a batch whose processing keeps raising: every event becomes a dead letter.

    The failed transactions rolled back, so none of its events was applied, held or keyed;
    replaying the dead letters (once the cause is fixed) sorts them into applied, duplicates
    and rejected through the usual path.
    """
    batch = IngestBatch.objects.select_for_update().filter(pk=batch_id).first()
    if batch is None or batch.status == BatchStatus.DONE:
        return 0
    raw_events = events_parse(body_format=batch.body_format, text=batch.raw_body)
    DeadLetter.objects.bulk_create(
        [
            DeadLetter(
                source_id=batch.source_id,
                batch_id=batch.pk,
                index=index,
                event_id=raw_event_id(raw),
                payload=payload_text(raw),
                reason_code=RejectionCode.PROCESSING_FAILED,
                reason=reason[:2000],
            )
            for index, raw in enumerate(raw_events)
        ],
        batch_size=1000,
    )
    # Its applied, duplicates and held are still 0: every attempt rolled back, and nothing
    # else writes the counts of a batch that is not done (settling moves those of done ones).
    IngestBatch.objects.filter(pk=batch.pk).update(
        status=BatchStatus.DONE, finished_at=timezone.now(), rejected=len(raw_events)
    )
    return len(raw_events)


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a group is applied.

    A 10,000-event group keeps hundreds of thousands of objects alive (events, requests,
    rows) while allocating more: the collector ran its full passes over all of them again and
    again, ~20% of a group's time in `bench/ingest_profile.py`. Reference counting still frees
    nearly everything; the few cycles left wait for the next collection after the group.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _batches_process_in_transaction(batch_ids: list[UUID]) -> dict[UUID, dict[str, int]]:
    """Apply the batches, oldest first, as one: return each one's counts.

    The row locks (SKIP LOCKED) leave out a batch another worker is applying now; it is
    left to that worker. Events of all the batches go through `events_apply` together, so a
    re-sent event in a later batch of the group is a duplicate like any other.
    """
    with _cyclic_gc_paused():
        return _batches_apply(batch_ids)


def _batches_apply(batch_ids: list[UUID]) -> dict[UUID, dict[str, int]]:
    batches = list(
        IngestBatch.objects.select_for_update(skip_locked=True, of=("self",))
        .select_related("source")
        .filter(pk__in=batch_ids)
        .exclude(status=BatchStatus.DONE)
        .order_by("received_at", "pk")
    )
    if not batches:
        return {}
    items = []
    spans = []  # each batch's items are items[start:end]
    for batch in batches:
        raw_events = events_parse(body_format=batch.body_format, text=batch.raw_body)
        text_check = UNSTORABLE_ESCAPE.search(batch.raw_body) is not None
        start = len(items)
        # Positional, in Item's field order (one item per event: keywords cost more).
        source_id, source_name, batch_id = batch.source_id, batch.source.name, batch.pk
        received_at, from_csv = batch.received_at, batch.body_format == "csv"
        items.extend(
            Item(source_id, source_name, batch_id, index, raw, received_at, from_csv, text_check)
            for index, raw in enumerate(raw_events)
        )
        spans.append((batch.pk, start, len(items)))
    summary = events_apply(items)
    if summary.held or summary.orders_created:
        # A worker applying another group at the same time may have held events for orders
        # this group creates, or created the orders this group holds events for, each unseen
        # by the other until its commit: whoever commits last releases them at once, rather
        # than the sweeper some seconds later.
        transaction.on_commit(_held_events_release_all)
    column = {APPLIED: "applied", DUPLICATE: "duplicates", REJECTED: "rejected", HELD: "held"}
    counts = {}
    for batch_id, start, end in spans:
        outcomes = Counter(item.outcome for item in items[start:end])
        counts[batch_id] = {name: outcomes[outcome] for outcome, name in column.items()}
    finished_at = timezone.now()
    for batch in batches:
        IngestBatch.objects.filter(pk=batch.pk).update(
            status=BatchStatus.DONE, finished_at=finished_at, **counts[batch.pk]
        )
    return counts


def events_apply(items: list[Item]) -> ProcessingSummary:
    """Decide and apply every item. Caller holds the transaction (and retries it)."""
    events_validate(items)
    site_ids, sku_ids = catalog_resolve(items)
    keys_claim(items)
    plan = OrderPlan(items=items, site_ids=site_ids, sku_ids=sku_ids)
    plan.run()
    plan.orders_save()
    all_items = items + plan.released
    keys_release([item for item in all_items if item.outcome == REJECTED and item.keyed])
    held_events_write(all_items)
    dead_letters_write(all_items)
    origin_counters_update(all_items)
    # The ledger and the KPI facts last, in this order: the stock-level locks and then the
    # KPI stock status rows of the same pairs are what concurrent workers wait for, so they
    # are taken in one order (levels first) and held only from here to the commit.
    applied = movements_record(requests=plan.requests)
    if plan.deliveries or plan.order_lines or plan.snapshots:
        # Each snapshot is compared with on_hand at its place among the events applied, also
        # when earlier events or batches of the group moved it in this call (docs/ingest.md).
        rollups_facts_record(
            deliveries=plan.deliveries,
            order_lines=plan.order_lines,
            snapshots=snapshots_at_their_position(
                snapshots=plan.snapshots, positions=plan.snapshot_positions, applied=applied
            ),
        )
    freshness_update(all_items)
    summary = ProcessingSummary(site_codes=plan.site_codes, orders_created=len(plan.new_orders))
    for item in all_items:
        if item.outcome == APPLIED:
            summary.applied += 1
        elif item.outcome == DUPLICATE:
            summary.duplicates += 1
        elif item.outcome == REJECTED:
            summary.rejected += 1
        elif item.outcome == HELD:
            summary.held += 1
    if plan.site_codes:
        stock_changed_notify(site_codes=plan.site_codes)
    return summary


def held_events_release(*, limit: int = 1000) -> int:
    """Apply held events whose order exists now (it appeared in a racing transaction)."""

    def release() -> int:
        rows = list(
            HeldEvent.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(order_id__in=Order.objects.values("order_id"))
            .select_related("source")
            .order_by("pk")[:limit]
        )
        if not rows:
            return 0
        events_apply([item_from_held(row) for row in rows])
        return len(rows)

    return run_atomic_with_retry(release)


HELD_RELEASE_CHUNK = 1000


def _held_events_release_all() -> None:
    try:
        while held_events_release(limit=HELD_RELEASE_CHUNK) == HELD_RELEASE_CHUNK:
            pass
    except DatabaseError as error:
        logger.warning("held events left for the sweeper: %s", error)
