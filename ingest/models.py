"""Feed sources, the batches they push, and what became of every event in them.

Conservation (docs/ingest.md): for a batch, and so for a source, accepted = applied + duplicates +
rejected + pending, where pending is `held` plus every event of a batch not processed yet.
"""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from core.timechecks import storable_time_check


class ByteOrderCharField(models.CharField):
    """A CharField compared in byte order ("C" collation) on PostgreSQL.

    Equality is the same as under the database's C.UTF-8, but PostgreSQL compares C strings
    with memcmp instead of going through the libc collation (a third off the idempotency-key
    insert, bench/README.md "Per-event work in ingest/"). Other databases keep their default:
    SQLite, the embedded default of a local run, has no collation named "C".
    """

    def db_parameters(self, connection):
        parameters = super().db_parameters(connection)
        if connection.vendor == "postgresql":
            parameters["collation"] = "C"
        return parameters


class FeedSource(models.Model):
    """A producer of events (courier app, WMS, 3PL). Its token is stored only as a hash."""

    name = models.CharField(max_length=100, unique=True)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    token_prefix = models.CharField(
        max_length=16, editable=False, help_text="The token's first characters, to recognise it."
    )
    # Kept in clear: verifying an HMAC needs the secret itself.
    signing_secret = models.CharField(max_length=128, blank=True, editable=False)
    require_signature = models.BooleanField(
        default=False, help_text="Refuse requests without a valid X-Signature header."
    )
    # On by default: `sha256=<HMAC of the body>` is the form the published feed contract names,
    # so a new source must accept it. Its replays are refused while the signature is remembered
    # (as for the timestamped form); untick to accept only `t=<time>,sha256=...`.
    legacy_body_signature = models.BooleanField(
        "accept body-only signature",
        default=True,
        help_text="Also accept 'X-Signature: sha256=<HMAC of the body alone>'. The same signature "
        "again within 10 minutes is refused (409), but a captured request can be replayed later "
        "(its events then count as duplicates). Untick once the producer signs "
        "'t=<time>,sha256=...'.",
    )
    rate_limit_per_minute = models.PositiveIntegerField(
        default=600, help_text="Requests per minute before answering 429."
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    token_rotated_at = models.DateTimeField(null=True, blank=True, editable=False)
    token_last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    # After a rotation the previous token keeps working until `previous_token_valid_until`,
    # so the producer can switch without a gap. Empty when there is none.
    previous_token_hash = models.CharField(max_length=64, blank=True, editable=False, db_index=True)
    previous_token_valid_until = models.DateTimeField(null=True, blank=True, editable=False)
    previous_token_last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Kept by the workers in the batch's transaction: feed freshness without scanning batches.
    newest_applied_occurred_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        constraints = [
            storable_time_check(
                "newest_applied_occurred_at", name="feed_source_newest_applied_storable", null=True
            ),
        ]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class BatchStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    PROCESSING = "processing", "Processing"
    DONE = "done", "Done"


class BatchFormat(models.TextChoices):
    JSON = "json", "JSON"
    NDJSON = "ndjson", "NDJSON"
    CSV = "csv", "CSV"


class IngestBatch(models.Model):
    """One accepted request, stored raw before `202` is answered; the job carries only its id."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    source = models.ForeignKey(FeedSource, on_delete=models.PROTECT, related_name="batches")
    body_format = models.CharField(max_length=8, choices=BatchFormat.choices)
    raw_body = models.TextField(help_text="The request body exactly as received (UTF-8).")
    status = models.CharField(
        max_length=16, choices=BatchStatus.choices, default=BatchStatus.QUEUED
    )
    accepted = models.PositiveIntegerField(help_text="Events in the request.")
    applied = models.PositiveIntegerField(default=0)
    duplicates = models.PositiveIntegerField(default=0)
    rejected = models.PositiveIntegerField(default=0)
    held = models.PositiveIntegerField(
        default=0, help_text="Order events waiting for their order to appear."
    )
    received_at = models.DateTimeField()
    job_id = models.CharField(max_length=64, blank=True)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0, help_text="Times a worker started it.")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Retention (ingest/housekeeping.py): when the raw body was emptied, and when the
    # idempotency keys of its events were deleted. The counts above are kept for good.
    body_dropped_at = models.DateTimeField(null=True, blank=True, editable=False)
    keys_dropped_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-received_at"]
        verbose_name = "ingest batch"
        verbose_name_plural = "ingest batches"
        indexes = [
            models.Index(fields=["source", "received_at"], name="batch_source_received_idx"),
            models.Index(fields=["finished_at"], name="batch_finished_idx"),
            models.Index(
                fields=["received_at"],
                condition=~Q(status="done"),
                name="batch_unfinished_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.source} {self.id} ({self.status})"

    @property
    def pending(self) -> int:
        """Events not yet applied, duplicate or rejected."""
        if self.status != BatchStatus.DONE:
            return self.accepted - self.applied - self.duplicates - self.rejected
        return self.held


class SourceEventTotals(models.Model):
    """Events per feed source since the start, and its batches: the sums of its batches'
    counts, kept by database triggers on every insert, count change and delete of a batch
    (migration 0013), whichever code writes it. `/metrics` and the feed status read one row a
    source instead of summing every batch ever stored. Events pending = accepted - applied -
    duplicates - rejected."""

    source = models.OneToOneField(
        FeedSource, primary_key=True, on_delete=models.CASCADE, related_name="+"
    )
    batches = models.BigIntegerField(default=0)
    accepted = models.BigIntegerField(default=0)
    applied = models.BigIntegerField(default=0)
    duplicates = models.BigIntegerField(default=0)
    rejected = models.BigIntegerField(default=0)

    class Meta:
        verbose_name = "source event totals"
        verbose_name_plural = "source event totals"

    def __str__(self) -> str:
        return f"{self.source_id}: {self.accepted} accepted"


class ProcessedEvent(models.Model):
    """The idempotency key of an event taken into the ledger path (applied or held).

    Inserted in the transaction that applies (or holds) the event: a re-sent event, a retried
    job or a racing worker hits the unique constraint and counts a duplicate. Rejected events
    keep no key, so a producer may fix and resend them.

    The unique constraint is the primary key `(source, event_id)`: no surrogate id, so each
    key costs one index entry and no sequence value (docs/ingest.md "Write path cost").
    """

    pk = models.CompositePrimaryKey("source", "event_id")
    # No database foreign keys (one key per event; PostgreSQL would check each at commit): the
    # batch transaction takes both ids from rows it holds. source: the primary key leads with
    # it, so no index of its own.
    source = models.ForeignKey(
        FeedSource, on_delete=models.PROTECT, related_name="+", db_constraint=False, db_index=False
    )
    event_id = ByteOrderCharField(max_length=200)
    batch = models.ForeignKey(
        IngestBatch,
        null=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )

    def __str__(self) -> str:
        return f"{self.source_id}:{self.event_id}"


class OrderState(models.TextChoices):
    OPEN = "open", "Open (reserved)"
    DISPATCHED = "dispatched", "Dispatched"
    CANCELLED = "cancelled", "Cancelled"


class Order(models.Model):
    """An order seen in `order.created`; `order_id` is global across sources."""

    # Byte order ("C"), unique through the Meta constraint: a unique field would also get a
    # varchar_pattern_ops index for LIKE, which nothing runs on orders.
    order_id = ByteOrderCharField(max_length=200)
    # No database foreign keys (hundreds of orders per batch, each checked at commit): the
    # batch transaction resolves the site and holds the source. No index either: orders are
    # only looked up by order_id and id, and every index costs each of the ~3,600 orders a
    # 10,000-event group inserts (docs/ingest.md "Write path cost").
    site = models.ForeignKey(
        "inventory_ops.Site",
        on_delete=models.PROTECT,
        related_name="+",
        db_constraint=False,
        db_index=False,
    )
    source = models.ForeignKey(
        FeedSource, on_delete=models.PROTECT, related_name="+", db_constraint=False, db_index=False
    )
    channel = models.CharField(max_length=100, blank=True)
    created_occurred_at = models.DateTimeField()
    lines = models.JSONField(help_text="[[sku_code, qty], ...] as created.")
    state = models.CharField(max_length=16, choices=OrderState.choices, default=OrderState.OPEN)
    delivered = models.BooleanField(default=False)

    class Meta:
        constraints = [
            storable_time_check("created_occurred_at", name="order_created_occurred_at_storable"),
            models.UniqueConstraint(fields=["order_id"], name="unique_order_id"),
        ]

    def __str__(self) -> str:
        return f"order {self.order_id} ({self.state})"


class HeldEvent(models.Model):
    """An order event whose order has not appeared yet: applied when it does, or rejected
    with "unknown order" after `INGEST_HOLD_SECONDS`."""

    source = models.ForeignKey(FeedSource, on_delete=models.PROTECT, related_name="+")
    batch = models.ForeignKey(IngestBatch, on_delete=models.PROTECT, related_name="+")
    index = models.PositiveIntegerField(help_text="Position of the event in its batch.")
    event_id = models.CharField(max_length=200)
    order_id = models.CharField(max_length=200, db_index=True)
    payload = models.TextField(help_text="The event as JSON text.")
    received_at = models.DateTimeField()
    held_until = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"held {self.event_id} (order {self.order_id})"


class DeadLetterStatus(models.TextChoices):
    OPEN = "open", "Open"
    REPLAYED = "replayed", "Replayed"
    DISCARDED = "discarded", "Discarded"


class RejectionCode(models.TextChoices):
    """What kind of cause a rejection has: the grouping key of the dead-letter console."""

    MALFORMED = "malformed", "Malformed event (wrong fields or types)"
    UNKNOWN_SITE = "unknown_site", "Unknown site"
    UNKNOWN_SKU = "unknown_sku", "Unknown SKU"
    UNKNOWN_ORDER = "unknown_order", "Unknown order (holding period over)"
    ORDER_STATE = "order_state", "Not possible in the order's state"
    WRONG_CURRENCY = "wrong_currency", "Wrong currency"
    TIME_OUT_OF_RANGE = "time_out_of_range", "Event time out of the accepted range"
    WRONG_SITE = "wrong_site", "Site differs from the order's site"
    PROCESSING_FAILED = "processing_failed", "Processing failed (batch gave up after retries)"


class DeadLetter(models.Model):
    """A rejected event, kept with its raw payload and reason until replayed or discarded."""

    source = models.ForeignKey(FeedSource, on_delete=models.PROTECT, related_name="dead_letters")
    # Indexed with `index` below (batch lookups use that index).
    batch = models.ForeignKey(
        IngestBatch, on_delete=models.PROTECT, related_name="dead_letters", db_index=False
    )
    index = models.PositiveIntegerField(help_text="Position of the event in its batch.")
    event_id = models.CharField(max_length=200, blank=True)
    payload = models.TextField(help_text="The raw event as JSON text.")
    reason_code = models.CharField(max_length=32, choices=RejectionCode.choices)
    reason = models.TextField(help_text="What is wrong, naming the field.")
    status = models.CharField(
        max_length=16, choices=DeadLetterStatus.choices, default=DeadLetterStatus.OPEN
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    replay_count = models.PositiveIntegerField(default=0)
    replayed_at = models.DateTimeField(null=True, blank=True)
    replay_outcome = models.CharField(
        max_length=16, blank=True, help_text="applied, duplicate or held, once replayed."
    )
    handled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Who replayed or discarded it last.",
    )
    discarded_at = models.DateTimeField(null=True, blank=True)
    discard_note = models.TextField(blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["status", "reason_code"], name="deadletter_status_reason_idx"),
            models.Index(fields=["batch", "index"], name="deadletter_batch_idx"),
        ]

    def __str__(self) -> str:
        return f"dead letter {self.pk} ({self.reason_code}, {self.status})"


class ArchivedDeadLetter(models.Model):
    """A resolved dead letter (replayed or discarded) moved out of the console's table once
    past `DEAD_LETTER_RETENTION_DAYS` (ingest/housekeeping.py): kept whole, read by nobody in
    the product, for audits. Plain ids instead of foreign keys: an archive outlives its rows."""

    dead_letter_id = models.BigIntegerField(unique=True)
    source_id = models.BigIntegerField()
    batch_id = models.UUIDField()
    index = models.PositiveIntegerField()
    event_id = models.CharField(max_length=200, blank=True)
    payload = models.TextField()
    reason_code = models.CharField(max_length=32, choices=RejectionCode.choices)
    reason = models.TextField()
    status = models.CharField(max_length=16, choices=DeadLetterStatus.choices)
    created_at = models.DateTimeField()
    resolved_at = models.DateTimeField()
    replay_count = models.PositiveIntegerField()
    replay_outcome = models.CharField(max_length=16, blank=True)
    handled_by_id = models.BigIntegerField(null=True)
    discard_note = models.TextField(blank=True)
    archived_at = models.DateTimeField()

    class Meta:
        ordering = ["-dead_letter_id"]

    def __str__(self) -> str:
        return f"archived dead letter {self.dead_letter_id} ({self.reason_code}, {self.status})"
