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

import bisect
import dataclasses
import functools
import gc
import hashlib
import json
import logging
import re
import secrets
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import ClassVar
from uuid import UUID

import django_rq
from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import BooleanField, Exists, F, OuterRef, Q
from django.db.models.expressions import RawSQL
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone
from pydantic import ValidationError
from redis.exceptions import RedisError
from rq.job import Job, JobStatus

from core.db import copy_rows, pg_int_array, pg_text_array, run_atomic_with_retry
from core.notify import stock_changed_notify
from core.queues import INGEST_QUEUE
from core.redis import redis_client
from core.timebounds import accepted_until
from dashboards.rollups import DeliveryFact, OrderLineFact, SnapshotFact, rollups_facts_record
from ingest.exceptions import FeedSourceExists, FeedSourceNotAllowed
from ingest.models import (
    BatchStatus,
    DeadLetter,
    DeadLetterStatus,
    FeedSource,
    HeldEvent,
    IngestBatch,
    Order,
    OrderState,
    ProcessedEvent,
    RejectionCode,
)
from ingest.parsing import events_parse
from ingest.schemas import (
    MAX_QTY,
    ORDER_EVENT_TYPES,
    event_validate,
    validation_reason,
)
from ledger.models import MovementCause, MovementKind, Site, Sku
from ledger.services import AppliedMovement, MovementRequest, movements_record

logger = logging.getLogger(__name__)

TOKEN_PREFIX = "iof_"  # noqa: S105 (a label, not a secret)
TOKEN_USE_RECORD_INTERVAL = timedelta(minutes=1)
# Managing feed sources (creating one, rotating its token) is an integration administrator's job:
# no shipped role has this permission, superusers do (docs/ingest.md, "Who manages sources").
MANAGE_FEED_SOURCES = "ingest.change_feedsource"
KEY_INSERT_CHUNK = 1000
CODE_LOOKUP_CHUNK = 900
DEFAULT_HOLD_SECONDS = 24 * 3600
# Order events of one order applied in this order when they were waiting for it.
ORDER_EVENT_RANK = {
    "order.created": 0,
    "order.dispatched": 1,
    "order.delivered": 2,
    "order.returned": 3,
    "order.cancelled": 4,
}


# --- Feed sources ---------------------------------------------------------------------------


def token_hash(token: str) -> str:
    # Tokens are 256 random bits, so a fast hash is enough: nothing to brute-force.
    return hashlib.sha256(token.encode()).hexdigest()


def _new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class IssuedCredentials:
    """Credentials shown once; only their hash (token) stays in the database."""

    source: FeedSource
    token: str
    signing_secret: str


def feed_source_create(
    *,
    name: str,
    require_signature: bool = False,
    accept_body_signature: bool = True,
    created_by=None,
) -> IssuedCredentials:
    """Create a source and its credentials (shown once).

    `created_by` is the person asking (from a screen), who needs `ingest.add_feedsource`; None is
    an operator at the server's shell (`create_feed_source`).
    """
    if created_by is not None and not created_by.has_perm("ingest.add_feedsource"):
        raise FeedSourceNotAllowed("create feed sources")
    name = name.strip()
    if not name:
        raise ValueError("a feed source needs a name")
    token = _new_token()
    secret = secrets.token_hex(32)
    try:
        with transaction.atomic():
            source = FeedSource.objects.create(
                name=name,
                token_hash=token_hash(token),
                token_prefix=token[: len(TOKEN_PREFIX) + 6],
                signing_secret=secret,
                require_signature=require_signature,
                legacy_body_signature=accept_body_signature,
            )
    except IntegrityError:
        raise FeedSourceExists(name) from None
    return IssuedCredentials(source=source, token=token, signing_secret=secret)


def feed_source_rotate_token(
    *, source: FeedSource, rotated_by=None, grace: timedelta | None = None
) -> str:
    """Give the source a new token and return it; the old one keeps working for `grace`
    (default INGEST_TOKEN_GRACE_SECONDS), so the producer can switch without a gap.

    `rotated_by` is the person asking (from a screen), who needs MANAGE_FEED_SOURCES; None is an
    operator at the server's shell (`create_feed_source --rotate`), who holds its keys anyway.
    A token rotated before that is out of its grace period at once: one previous token at most.
    """
    if rotated_by is not None and not rotated_by.has_perm(MANAGE_FEED_SOURCES):
        raise FeedSourceNotAllowed("rotate feed tokens")
    if grace is None:
        grace = timedelta(seconds=settings.INGEST_TOKEN_GRACE_SECONDS)
    now = timezone.now()
    token = _new_token()
    with transaction.atomic():
        current = FeedSource.objects.select_for_update().get(pk=source.pk)
        keep_previous = grace > timedelta(0)
        FeedSource.objects.filter(pk=source.pk).update(
            token_hash=token_hash(token),
            token_prefix=token[: len(TOKEN_PREFIX) + 6],
            token_rotated_at=now,
            token_last_used_at=None,
            previous_token_hash=current.token_hash if keep_previous else "",
            previous_token_valid_until=now + grace if keep_previous else None,
            previous_token_last_used_at=current.token_last_used_at if keep_previous else None,
        )
    source.refresh_from_db()
    return token


def feed_source_end_token_grace(*, source: FeedSource, ended_by=None) -> None:
    """Stop the previous token now (a leaked token must not wait out its grace period)."""
    if ended_by is not None and not ended_by.has_perm(MANAGE_FEED_SOURCES):
        raise FeedSourceNotAllowed("end a rotated token's grace period")
    FeedSource.objects.filter(pk=source.pk).update(
        previous_token_hash="", previous_token_valid_until=None
    )
    source.refresh_from_db()


def feed_source_by_token(*, token: str) -> FeedSource | None:
    """The source whose current token this is, or whose previous one in its grace period.

    Notes when the token was used, at most once per TOKEN_USE_RECORD_INTERVAL, so the hot path
    writes once a minute per token rather than on every request.
    """
    digest = token_hash(token)
    now = timezone.now()
    source = FeedSource.objects.filter(
        Q(token_hash=digest) | Q(previous_token_hash=digest, previous_token_valid_until__gt=now)
    ).first()
    if source is None:
        return None
    field = "token_last_used_at" if source.token_hash == digest else "previous_token_last_used_at"
    last_used = getattr(source, field)
    if last_used is None or now - last_used >= TOKEN_USE_RECORD_INTERVAL:
        FeedSource.objects.filter(pk=source.pk).update(**{field: now})
        setattr(source, field, now)
    return source


# --- Receiving batches ----------------------------------------------------------------------


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


# --- Processing ------------------------------------------------------------------------------

APPLIED, DUPLICATE, HELD, REJECTED = "applied", "duplicate", "held", "rejected"


@dataclass(slots=True, eq=False)
class _Item:
    """One event on its way through `_events_apply`."""

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
                event_id=_raw_event_id(raw),
                payload=_payload_text(raw),
                reason_code=RejectionCode.PROCESSING_FAILED,
                reason=reason[:2000],
            )
            for index, raw in enumerate(raw_events)
        ],
        batch_size=1000,
    )
    IngestBatch.objects.filter(pk=batch.pk).update(
        status=BatchStatus.DONE,
        finished_at=timezone.now(),
        applied=0,
        duplicates=0,
        held=0,
        rejected=len(raw_events),
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
    left to that worker. Events of all the batches go through `_events_apply` together, so a
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
        text_check = _UNSTORABLE_ESCAPE.search(batch.raw_body) is not None
        start = len(items)
        # Positional, in _Item's field order (one item per event: keywords cost more).
        source_id, source_name, batch_id = batch.source_id, batch.source.name, batch.pk
        received_at, from_csv = batch.received_at, batch.body_format == "csv"
        items.extend(
            _Item(source_id, source_name, batch_id, index, raw, received_at, from_csv, text_check)
            for index, raw in enumerate(raw_events)
        )
        spans.append((batch.pk, start, len(items)))
    summary = _events_apply(items)
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


def _events_apply(items: list[_Item]) -> ProcessingSummary:
    """Decide and apply every item. Caller holds the transaction (and retries it)."""
    _events_validate(items)
    site_ids, sku_ids = _catalog_resolve(items)
    _keys_claim(items)
    plan = _OrderPlan(items=items, site_ids=site_ids, sku_ids=sku_ids)
    plan.run()
    plan.orders_save()
    all_items = items + plan.released
    _keys_release([item for item in all_items if item.outcome == REJECTED and item.keyed])
    _held_events_write(all_items)
    _dead_letters_write(all_items)
    _origin_counters_update(all_items)
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
    _freshness_update(all_items)
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


# In a body that passed `body_decode` (no literal NUL, valid UTF-8), the only way to a string
# PostgreSQL cannot store is a JSON escape: \u0000 or a lone surrogate \ud800-\udfff.
_UNSTORABLE_ESCAPE = re.compile(r"\\u(0000|d[89a-f])", re.IGNORECASE)


def _text_problem(value: object, path: str = "") -> str | None:
    """Name the first string PostgreSQL cannot store (NUL, lone surrogate) and where it is."""
    if isinstance(value, str):
        if "\x00" in value:
            return f"{path or 'text'}: contains a NUL character"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return f"{path or 'text'}: contains an invalid unicode escape (a lone surrogate)"
        return None
    if isinstance(value, dict):
        children = value.items()
    elif isinstance(value, list):
        children = enumerate(value)
    else:
        return None
    for key, child in children:
        problem = _text_problem(key, path) or _text_problem(child, f"{path}.{key}".lstrip("."))
        if problem:
            return problem
    return None


def _event_time_range() -> tuple[datetime, datetime]:
    """The event times accepted now: from the floor to the future tolerance after now."""
    return settings.EVENT_TIME_FLOOR, accepted_until(
        now=timezone.now(), tolerance_seconds=settings.EVENT_TIME_FUTURE_TOLERANCE_SECONDS
    )


def _time_problem(event, earliest: datetime, latest: datetime) -> str | None:
    """Name the event's time field outside [earliest, latest], and the range.

    Compared as given, never converted: 9999-12-31T23:59:59-14:00 is valid ISO 8601 that no
    datetime can hold in UTC (and that PostgreSQL stores, as year 10000, but cannot give back).
    """
    occurred_at = event.occurred_at
    if earliest <= occurred_at <= latest:
        return None
    tolerance_h = settings.EVENT_TIME_FUTURE_TOLERANCE_SECONDS / 3600
    return (
        f"occurred_at: {occurred_at.isoformat()} is outside the accepted range "
        f"{earliest.isoformat()} to {latest.isoformat(timespec='seconds')} "
        f"(not before {earliest:%Y-%m-%d}, at most {tolerance_h:g} h after now)"
    )


def _events_validate(items: list[_Item]) -> None:
    earliest, latest = _event_time_range()
    for item in items:
        if item.outcome:
            continue
        if not isinstance(item.raw, dict):
            item.reject(RejectionCode.MALFORMED, "an event must be a JSON object")
            continue
        if item.from_csv and item.raw.get("type") in ORDER_EVENT_TYPES:
            item.reject(
                RejectionCode.MALFORMED,
                "type: CSV carries only stock.* events; send order events as JSON or NDJSON",
            )
            continue
        try:
            event = event_validate(item.raw)
        except ValidationError as error:
            item.reject(RejectionCode.MALFORMED, validation_reason(error))
            continue
        # Only the validated fields are stored (extra ones are ignored), so only they matter.
        problem = _text_problem(event.model_dump()) if item.text_check else None
        if problem:
            item.reject(RejectionCode.MALFORMED, problem)
            continue
        problem = _time_problem(event, earliest, latest)
        if problem:
            item.reject(RejectionCode.TIME_OUT_OF_RANGE, problem)
            continue
        item.event = event


def _one_of(model, column: str, values: Sequence, *, text: bool):
    """A filter `column IN values`: on PostgreSQL one array parameter (Django would prepare
    and quote each of thousands of values on the client), elsewhere `__in`."""
    if connection.vendor != "postgresql":
        return Q(**{f"{column}__in": list(values)})
    literal = pg_text_array(values) if text else pg_int_array(values)
    kind = "text" if text else "bigint"
    # Only our own table and column names are interpolated; the values are one parameter.
    sql = f'"{model._meta.db_table}"."{column}" = ANY(%s::{kind}[])'
    return RawSQL(sql, [literal], output_field=BooleanField())  # noqa: S611 (see above)


def _codes_lookup(model, codes: set[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    code_list = sorted(codes)
    for start in range(0, len(code_list), CODE_LOOKUP_CHUNK):
        chunk = code_list[start : start + CODE_LOOKUP_CHUNK]
        found.update(model.objects.filter(code__in=chunk).values_list("code", "id"))
    return found


# The most one event (or one line of it) may move in value, units times unit cost: the KPI
# rollups add value changes in 1/10,000 of the currency to 64-bit sums, which a billion units of
# a SKU costing billions overflowed (the batch's transaction then failed at every claim).
EVENT_VALUE_LIMIT = Decimal(10) ** 12
_COSTLY_FROM = EVENT_VALUE_LIMIT / MAX_QTY  # SKUs cheaper than this never reach the limit


def _skus_lookup(codes: set[str]) -> tuple[dict[str, int], dict[str, Decimal]]:
    """SKU ids by code, and the unit costs of those costly enough to reach the value limit."""
    ids: dict[str, int] = {}
    costly: dict[str, Decimal] = {}
    code_list = sorted(codes)
    for start in range(0, len(code_list), CODE_LOOKUP_CHUNK):
        chunk = code_list[start : start + CODE_LOOKUP_CHUNK]
        for code, pk, unit_cost in Sku.objects.filter(code__in=chunk).values_list(
            "code", "id", "unit_cost"
        ):
            ids[code] = pk
            if unit_cost > _COSTLY_FROM:
                costly[code] = unit_cost
    return ids, costly


def _value_problem(fields: dict, costly: dict[str, Decimal]) -> str | None:
    """Name the quantity of an event whose value, at unit cost, exceeds EVENT_VALUE_LIMIT."""
    sku = fields.get("sku")
    amounts = [
        (name, sku, fields[name])
        for name in ("qty", "qty_delta", "counted_qty")
        if sku in costly and name in fields
    ]
    amounts += [
        (f"lines.{position}.qty", line.sku, line.qty)
        for position, line in enumerate(fields.get("lines", ()))
        if line.sku in costly
    ]
    for name, code, units in amounts:
        if abs(units) * costly[code] > EVENT_VALUE_LIMIT:
            return (
                f"{name}: {abs(units)} units of {code!r} at {costly[code]} are worth more than "
                f"{EVENT_VALUE_LIMIT:,.0f}, the most one event may move"
            )
    return None


def _catalog_resolve(items: list[_Item]) -> tuple[dict[str, int], dict[str, int]]:
    """Reject events naming an unknown site or SKU (or a foreign currency); return the ids."""
    site_codes, sku_codes = set(), set()
    for item in items:
        if item.outcome:
            continue
        # The model's __dict__: getattr on a pydantic model for a field it lacks is slow.
        fields = item.event.__dict__
        site_codes.add(fields["site"])
        if fields.get("to_site"):
            site_codes.add(fields["to_site"])
        if fields.get("sku"):
            sku_codes.add(fields["sku"])
        for line in fields.get("lines", ()):
            sku_codes.add(line.sku)
    site_ids = _codes_lookup(Site, site_codes)
    sku_ids, costly = _skus_lookup(sku_codes)
    currency = settings.INVENTORY_CURRENCY
    for item in items:
        if item.outcome:
            continue
        fields = item.event.__dict__
        site, to_site, sku = fields["site"], fields.get("to_site"), fields.get("sku")
        if site not in site_ids:
            item.reject(RejectionCode.UNKNOWN_SITE, f"site: unknown site {site!r}")
        elif to_site is not None and to_site not in site_ids:
            item.reject(RejectionCode.UNKNOWN_SITE, f"to_site: unknown site {to_site!r}")
        elif to_site == site:
            item.reject(RejectionCode.MALFORMED, "to_site: must differ from site")
        elif sku is not None and sku not in sku_ids:
            item.reject(RejectionCode.UNKNOWN_SKU, f"sku: unknown SKU {sku!r}")
        elif fields.get("currency") not in (None, currency):
            item.reject(
                RejectionCode.WRONG_CURRENCY,
                f"currency: must be {currency} (the deployment currency), "
                f"not {fields['currency']!r}",
            )
        else:
            for position, line in enumerate(fields.get("lines", ())):
                if line.sku not in sku_ids:
                    item.reject(
                        RejectionCode.UNKNOWN_SKU,
                        f"lines.{position}.sku: unknown SKU {line.sku!r}",
                    )
                    break
            if costly and not item.outcome:
                problem = _value_problem(fields, costly)
                if problem:
                    item.reject(RejectionCode.MALFORMED, problem)
    return site_ids, sku_ids


def _keys_claim(items: list[_Item]) -> None:
    """Insert the idempotency keys; an event whose key exists is a duplicate."""
    claimants: dict[tuple[int, str], _Item] = {}
    for item in items:
        if item.outcome or item.held_id is not None:
            continue
        key = (item.source_id, item.event.event_id)
        if key in claimants:
            item.outcome = DUPLICATE  # the same event twice in one call
        else:
            claimants[key] = item
    if not claimants:
        return
    # Sorted, so that racing workers take the key locks in one order.
    rows = [(key[0], key[1], claimants[key].batch_id) for key in sorted(claimants)]
    inserted = _keys_insert(rows)
    for key, item in claimants.items():
        if key in inserted:
            item.keyed = True
        else:
            item.outcome = DUPLICATE


def _keys_insert(rows: list[tuple[int, str, UUID]]) -> set[tuple[int, str]]:
    """INSERT ... ON CONFLICT DO NOTHING the keys; return those that were new."""
    table = ProcessedEvent._meta.db_table
    conflict = "ON CONFLICT (source_id, event_id) DO NOTHING RETURNING source_id, event_id"
    inserted: set[tuple[int, str]] = set()
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Three array parameters rather than thousands of placeholders.
            source_ids, event_ids, batch_ids = zip(*rows, strict=True)
            batch_text = {batch_id: str(batch_id) for batch_id in set(batch_ids)}
            batch_ids = [batch_text[batch_id] for batch_id in batch_ids]
            cursor.execute(
                f"INSERT INTO {table} (source_id, event_id, batch_id) "  # noqa: S608
                f"SELECT * FROM unnest(%s::bigint[], %s::text[], %s::uuid[]) {conflict}",
                [pg_int_array(source_ids), pg_text_array(event_ids), pg_int_array(batch_ids)],
            )
            return set(cursor.fetchall())
        for start in range(0, len(rows), KEY_INSERT_CHUNK):
            chunk = rows[start : start + KEY_INSERT_CHUNK]
            placeholders = ", ".join(["(%s, %s, %s)"] * len(chunk))
            params = [
                value
                for source_id, event_id, batch_id in chunk
                for value in (source_id, event_id, batch_id.hex)
            ]
            # Only the table name and placeholders are interpolated; values go as parameters.
            cursor.execute(
                f"INSERT INTO {table} (source_id, event_id, batch_id) "  # noqa: S608
                f"VALUES {placeholders} {conflict}",
                params,
            )
            inserted.update(cursor.fetchall())
    return inserted


def _keys_release(items: list[_Item]) -> None:
    """Delete the keys of events rejected after claiming them: they may be sent again."""
    if not items:
        return
    condition = Q()
    for item in items:
        condition |= Q(source_id=item.source_id, event_id=item.event.event_id)
    ProcessedEvent.objects.filter(condition).delete()
    for item in items:
        item.keyed = False


@dataclass(slots=True, eq=False)
class _OrderRecord:
    """An order as the plan sees it (a model instance per order costs too much per batch).

    Field names match ORDER_COLUMNS; `pk` is None for an order this call creates.
    """

    pk: int | None
    order_id: str
    site_id: int
    source_id: int
    channel: str
    created_occurred_at: datetime
    lines: list
    state: str
    delivered: bool


class _OrderPlan:
    """Turn the accepted events into movement requests and KPI facts, in arrival order."""

    def __init__(self, *, items, site_ids, sku_ids):
        self.items = items
        self.site_ids = site_ids
        self.sku_ids = sku_ids
        self.requests: list[MovementRequest] = []
        self.deliveries: list[DeliveryFact] = []
        self.order_lines: list[OrderLineFact] = []
        self.snapshots: list[SnapshotFact] = []
        self.site_codes: set[str] = set()
        self.orders: dict[str, _OrderRecord] = {}
        self.site_code_by_id: dict[int, str] = {pk: code for code, pk in site_ids.items()}
        self.new_orders: list[_OrderRecord] = []
        self.changed_orders: dict[str, _OrderRecord] = {}
        self.released: list[_Item] = []  # held events taken in because their order appears
        # Position in `requests` at which each snapshot was applied: the stock it is compared
        # with is the one the movements before it left.
        self.snapshot_positions: list[int] = []

    def run(self) -> None:
        live = [item for item in self.items if not item.outcome]
        self._orders_lock(live)
        waiting: dict[str, list[_Item]] = defaultdict(list)
        for item in self._held_for_new_orders(live):
            waiting[item.event.order_id].append(item)
        orders, apply = self.orders, self._apply
        for item in live:
            event = item.event
            kind = event.type
            if kind in _ORDER_FOLLOWER_TYPES and event.order_id not in orders:
                waiting[event.order_id].append(item)
                continue
            apply(item)
            if kind == "order.created" and item.outcome == APPLIED and waiting:
                followers = waiting.pop(event.order_id, None)
                if followers:
                    followers.sort(
                        key=lambda f: (f.event.occurred_at, ORDER_EVENT_RANK[f.event.type])
                    )
                    for follower in followers:
                        apply(follower)
        for followers in waiting.values():
            for item in followers:
                # Released held events whose order is still missing stay held as they are.
                if item.held_id is None:
                    item.outcome = HELD

    def _orders_lock(self, live: list[_Item]) -> None:
        order_ids = sorted(
            {item.event.order_id for item in live if item.event.type in ORDER_EVENT_TYPES}
        )
        if not order_ids:
            return
        locked = (
            Order.objects.select_for_update(of=("self",))
            .filter(_one_of(Order, "order_id", order_ids, text=True))
            .order_by("pk")
            .values_list("pk", *ORDER_COLUMNS, "site__code")
        )
        for pk, *columns, site_code in locked:
            order = _OrderRecord(pk, *columns)
            self.orders[order.order_id] = order
            self.site_code_by_id[order.site_id] = site_code

    def _held_for_new_orders(self, live: list[_Item]) -> list[_Item]:
        """Load the held events of the orders this call creates, to apply right after them."""
        new_order_ids = {
            item.event.order_id
            for item in live
            if item.event.type == "order.created" and item.event.order_id not in self.orders
        }
        if not new_order_ids:
            return []
        held = list(
            # of=self: the source rows are shared by every worker of the source.
            HeldEvent.objects.select_for_update(of=("self",))
            .select_related("source")
            .filter(_one_of(HeldEvent, "order_id", sorted(new_order_ids), text=True))
            .order_by("pk")
        )
        released = [_item_from_held(row) for row in held]
        _events_validate(released)
        site_ids, sku_ids = _catalog_resolve(released)
        self.site_ids.update(site_ids)
        self.sku_ids.update(sku_ids)
        self.site_code_by_id.update({pk: code for code, pk in site_ids.items()})
        self.released.extend(released)
        return [item for item in released if not item.outcome]

    # The handlers append their MovementRequests themselves, with the event's `cause_ref`
    # built once (planning is per-event Python: bench/README.md "Per-event Python cost").

    def _apply(self, item: _Item) -> None:
        event = item.event
        if event.type in _ORDER_FOLLOWER_TYPES and not self._site_agrees(item, event):
            return
        _OrderPlan.HANDLERS[event.type](self, item, event)
        if not item.outcome:
            item.outcome = APPLIED

    def _site_agrees(self, item: _Item, event) -> bool:
        """Reject an event of a known order that names another site than the order's.

        Its source may differ (a shop creates, a courier app dispatches); its site may not:
        stock would move at the order's site while the producer meant another one.
        """
        _, site = self._order(event)
        if event.site == site:
            return True
        item.reject(
            RejectionCode.WRONG_SITE,
            f"site: order {event.order_id!r} is at site {site!r}, not {event.site!r}",
        )
        return False

    def _order(self, event) -> tuple[_OrderRecord, str]:
        order = self.orders[event.order_id]
        return order, self.site_code_by_id[order.site_id]

    def _order_changed(self, order: _OrderRecord) -> None:
        if order.pk is not None:
            self.changed_orders[order.order_id] = order

    def _apply_order_created(self, item, event) -> None:
        if event.order_id in self.orders:
            item.reject(
                RejectionCode.ORDER_STATE, f"order_id: order {event.order_id!r} already exists"
            )
            return
        site, occurred_at, order_id = event.site, event.occurred_at, event.order_id
        site_id = self.site_ids[site]
        cause_ref = f"{item.source_name}:{event.event_id}"
        lines = []
        append_request, append_line, sku_ids = (
            self.requests.append,
            self.order_lines.append,
            self.sku_ids,
        )
        for line in event.lines:
            sku, qty = line.sku, line.qty
            lines.append([sku, qty])
            append_request(
                MovementRequest(
                    site=site,
                    sku=sku,
                    kind=_RESERVED,
                    occurred_at=occurred_at,
                    reserved_delta=qty,
                    cause=_FEED_EVENT,
                    cause_ref=cause_ref,
                )
            )
            append_line(
                OrderLineFact(
                    site_id=site_id,
                    sku_id=sku_ids[sku],
                    occurred_at=occurred_at,
                    qty=qty,
                    order_id=order_id,
                )
            )
        order = _OrderRecord(
            pk=None,
            order_id=order_id,
            site_id=site_id,
            source_id=item.source_id,
            channel=event.channel,
            created_occurred_at=occurred_at,
            lines=lines,
            state=OrderState.OPEN,
            delivered=False,
        )
        self.orders[order_id] = order
        self.new_orders.append(order)
        self.site_codes.add(site)

    def _apply_order_dispatched(self, item, event) -> None:
        order, site = self._order(event)
        if order.state != OrderState.OPEN:
            item.reject(
                RejectionCode.ORDER_STATE,
                f"order_id: order {event.order_id!r} is already {order.state}",
            )
            return
        self._lines_request(item, event, site, order.lines, _DISPATCHED, on_hand=-1, reserved=-1)
        order.state = OrderState.DISPATCHED
        self._order_changed(order)

    def _apply_order_delivered(self, item, event) -> None:
        order, site = self._order(event)
        if order.delivered:
            item.reject(
                RejectionCode.ORDER_STATE,
                f"order_id: order {event.order_id!r} is already delivered",
            )
            return
        order.delivered = True
        self._order_changed(order)
        self.deliveries.append(
            DeliveryFact(
                site_id=order.site_id,
                occurred_at=event.occurred_at,
                accurate=event.accurate,
                shipping_cost=event.shipping_cost,
                order_created_at=order.created_occurred_at,
            )
        )
        self.site_codes.add(site)

    def _apply_order_cancelled(self, item, event) -> None:
        order, site = self._order(event)
        if order.state != OrderState.OPEN:
            return  # nothing is reserved any more: releasing nothing is still applied
        self._lines_request(item, event, site, order.lines, _RELEASED, on_hand=0, reserved=-1)
        order.state = OrderState.CANCELLED
        self._order_changed(order)

    def _apply_order_returned(self, item, event) -> None:
        _, site = self._order(event)
        lines = [(line.sku, line.qty) for line in event.lines]
        self._lines_request(item, event, site, lines, _RETURNED, on_hand=1, reserved=0)

    def _lines_request(self, item, event, site, lines, kind, *, on_hand, reserved) -> None:
        """One movement per (sku, qty) line at `site`: deltas are qty times the signs given."""
        cause_ref, occurred_at = f"{item.source_name}:{event.event_id}", event.occurred_at
        self.requests.extend(
            MovementRequest(
                site=site,
                sku=sku,
                kind=kind,
                occurred_at=occurred_at,
                on_hand_delta=on_hand * qty,
                reserved_delta=reserved * qty,
                cause=_FEED_EVENT,
                cause_ref=cause_ref,
            )
            for sku, qty in lines
        )
        if lines:
            self.site_codes.add(site)

    def _apply_stock_received(self, item, event) -> None:
        self._stock_request(item, event, _RECEIVED, on_hand_delta=event.qty)

    def _apply_stock_transferred(self, item, event) -> None:
        self._stock_request(item, event, _TRANSFER_OUT, on_hand_delta=-event.qty)
        self._stock_request(item, event, _TRANSFER_IN, site=event.to_site, on_hand_delta=event.qty)

    def _apply_stock_adjusted(self, item, event) -> None:
        self._stock_request(item, event, _ADJUSTED, on_hand_delta=event.qty_delta)

    def _apply_stock_counted(self, item, event) -> None:
        self._stock_request(item, event, _COUNTED, counted_qty=event.counted_qty)

    def _stock_request(self, item, event, kind, *, site=None, **amount) -> None:
        """The one movement of a stock.* event on one SKU (at `site`, default the event's)."""
        site = site or event.site
        self.requests.append(
            MovementRequest(
                site=site,
                sku=event.sku,
                kind=kind,
                occurred_at=event.occurred_at,
                cause=_FEED_EVENT,
                cause_ref=f"{item.source_name}:{event.event_id}",
                **amount,
            )
        )
        self.site_codes.add(site)

    def _apply_stock_snapshot(self, item, event) -> None:
        lines: dict[int, int] = defaultdict(int)
        for line in event.lines:
            lines[self.sku_ids[line.sku]] += line.qty
        self.snapshots.append(
            SnapshotFact(
                site_id=self.site_ids[event.site], occurred_at=event.occurred_at, lines=dict(lines)
            )
        )
        self.snapshot_positions.append(len(self.requests))
        self.site_codes.add(event.site)

    # Plain functions, not bound methods on the instance: a plan holding its own bound
    # methods is a reference cycle, and its tens of thousands of requests and facts would wait
    # for the cyclic collector instead of being freed when the group is done.
    HANDLERS: ClassVar[dict[str, Callable]] = {
        "order.created": _apply_order_created,
        "order.dispatched": _apply_order_dispatched,
        "order.delivered": _apply_order_delivered,
        "order.cancelled": _apply_order_cancelled,
        "order.returned": _apply_order_returned,
        "stock.received": _apply_stock_received,
        "stock.transferred": _apply_stock_transferred,
        "stock.adjusted": _apply_stock_adjusted,
        "stock.counted": _apply_stock_counted,
        "stock.snapshot": _apply_stock_snapshot,
    }

    def orders_save(self) -> None:
        if self.new_orders:
            _orders_insert(self.new_orders)
        by_state: dict[tuple[str, bool], list[int]] = defaultdict(list)
        for order in self.changed_orders.values():
            by_state[(order.state, order.delivered)].append(order.pk)
        for (state, delivered), pks in sorted(by_state.items()):
            Order.objects.filter(_one_of(Order, "id", pks, text=False)).update(
                state=state, delivered=delivered
            )


def snapshots_at_their_position(
    *,
    snapshots: Sequence[SnapshotFact],
    positions: Sequence[int],
    applied: Sequence[AppliedMovement],
) -> list[SnapshotFact]:
    """Give each snapshot the on_hand it is compared with: the stock at its place among the
    events, i.e. on_hand before the call plus the deltas of the movements applied before it.

    `positions[i]` is the number of movement requests made before snapshot i (in the order the
    events were applied, across the batches of a group); `applied` answers those requests, in
    order. Pairs the call does not move are left out: the ledger's on_hand is theirs.
    """
    wanted = {(fact.site_id, sku_id) for fact in snapshots for sku_id in fact.lines}
    history: dict[tuple[int, int], list[tuple[int, int, int]]] = defaultdict(list)
    for position, movement in enumerate(applied):
        pair = (movement.site_id, movement.sku_id)
        if pair in wanted:
            history[pair].append((position, movement.on_hand_before, movement.on_hand_after))
    facts = []
    for fact, snapshot_position in zip(snapshots, positions, strict=True):
        on_hand = {}
        for sku_id in fact.lines:
            moves = history.get((fact.site_id, sku_id))
            if moves:
                # The first movement after the snapshot found what it saw; else the last before.
                later = bisect.bisect_left(moves, (snapshot_position,))
                on_hand[sku_id] = moves[later][1] if later < len(moves) else moves[-1][2]
        facts.append(dataclasses.replace(fact, on_hand=on_hand))
    return facts


# The kinds and cause the plan writes (looked up once, not per movement).
_FEED_EVENT = MovementCause.FEED_EVENT
_RESERVED, _DISPATCHED = MovementKind.ORDER_RESERVED, MovementKind.ORDER_DISPATCHED
_RELEASED, _RETURNED = MovementKind.ORDER_RELEASED, MovementKind.ORDER_RETURNED
_RECEIVED, _ADJUSTED, _COUNTED = MovementKind.RECEIVED, MovementKind.ADJUSTED, MovementKind.COUNTED
_TRANSFER_OUT, _TRANSFER_IN = MovementKind.TRANSFER_OUT, MovementKind.TRANSFER_IN
# Order events that need their order to exist (held until it does).
_ORDER_FOLLOWER_TYPES = ORDER_EVENT_TYPES - {"order.created"}

ORDER_COLUMNS = (
    "order_id",
    "site_id",
    "source_id",
    "channel",
    "created_occurred_at",
    "lines",
    "state",
    "delivered",
)


def _orders_insert(orders: list[_OrderRecord]) -> None:
    """Insert new orders: COPY on PostgreSQL (hundreds per batch), the ORM elsewhere."""
    rows = [
        (
            order.order_id,
            order.site_id,
            order.source_id,
            order.channel,
            order.created_occurred_at,
            order.lines,
            order.state,
            order.delivered,
        )
        for order in orders
    ]  # in ORDER_COLUMNS order
    if connection.vendor != "postgresql":
        Order.objects.bulk_create(
            [Order(**dict(zip(ORDER_COLUMNS, row, strict=True))) for row in rows],
            batch_size=1000,
        )
        return
    copy_rows(Order, ORDER_COLUMNS, rows)


def _payload_text(raw: object) -> str:
    # ASCII-escaped JSON: storable whatever the event holds (NUL or lone surrogates included).
    return json.dumps(raw, ensure_ascii=True)


def _item_from_held(row: HeldEvent) -> _Item:
    return _Item(
        source_id=row.source_id,
        source_name=row.source.name,
        batch_id=row.batch_id,
        index=row.index,
        raw=json.loads(row.payload),
        received_at=row.received_at,
        held_id=row.pk,
        keyed=True,
    )


def _hold_seconds() -> int:
    return int(getattr(settings, "INGEST_HOLD_SECONDS", DEFAULT_HOLD_SECONDS))


def _held_events_write(items: list[_Item]) -> None:
    now = timezone.now()
    held_until = now + timedelta(seconds=_hold_seconds())
    new_holds = [
        HeldEvent(
            source_id=item.source_id,
            batch_id=item.batch_id,
            index=item.index,
            event_id=item.event.event_id,
            order_id=item.event.order_id,
            payload=_payload_text(item.raw),
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


def _raw_event_id(raw: object) -> str:
    event_id = raw.get("event_id") if isinstance(raw, dict) else None
    if not isinstance(event_id, str) or _text_problem(event_id):
        return ""
    return event_id[:200]


def _dead_letters_write(items: list[_Item]) -> None:
    now = timezone.now()
    fresh = [
        DeadLetter(
            source_id=item.source_id,
            batch_id=item.batch_id,
            index=item.index,
            event_id=_raw_event_id(item.raw),
            payload=_payload_text(item.raw),
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


def _origin_counters_update(items: list[_Item]) -> None:
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


def _freshness_update(items: list[_Item]) -> None:
    by_source: dict[int, list[datetime]] = defaultdict(list)
    for item in items:
        if item.outcome == APPLIED:
            by_source[item.source_id].append(item.event.occurred_at)
    newest = {source_id: max(times) for source_id, times in by_source.items()}
    # Last in the transaction: the source row stays locked only until the commit.
    for source_id in sorted(newest):
        FeedSource.objects.filter(pk=source_id).update(
            newest_applied_occurred_at=Greatest(
                Coalesce(F("newest_applied_occurred_at"), newest[source_id]), newest[source_id]
            )
        )


# --- Held events and the sweeper -------------------------------------------------------------


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
        items = [_item_from_held(row) for row in rows]
        hours = _hold_seconds() / 3600
        for item, row in zip(items, rows, strict=True):
            _events_validate([item])
            item.reject(
                RejectionCode.UNKNOWN_ORDER,
                f"order_id: unknown order {row.order_id!r} (still unknown after {hours:g} h)",
            )
        _keys_release([item for item in items if item.event is not None])
        for item in items:
            item.keyed = False
        _held_events_write(items)
        _dead_letters_write(items)
        _origin_counters_update(items)
        return len(items)

    return run_atomic_with_retry(expire)


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
        _events_apply([_item_from_held(row) for row in rows])
        return len(rows)

    return run_atomic_with_retry(release)


HELD_RELEASE_CHUNK = 1000


def _held_events_release_all() -> None:
    try:
        while held_events_release(limit=HELD_RELEASE_CHUNK) == HELD_RELEASE_CHUNK:
            pass
    except DatabaseError as error:
        logger.warning("held events left for the sweeper: %s", error)


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


# --- Dead letters ----------------------------------------------------------------------------


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
            _Item(
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
        _events_apply(items)
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
        raise ValueError("say why these dead letters are discarded (a note is required)")
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
