"""Alert rules, alerts with their transitions, runbooks with their versions, remediation log.

Written only by `oncall.services` (the admin edits rules and runbooks through them).
"""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import models
from django.db.models import Q

from ledger.models import Site

# Runbooks and the remediation log live in their own module (this one would outgrow 500 lines);
# imported here so Django finds them and `from oncall.models import Runbook` keeps working.
from oncall.runbook_models import (  # noqa: F401
    DiagnosticName,
    RemediationAction,
    RemediationKind,
    RemediationStatus,
    Runbook,
    RunbookVersion,
)


class AlertKind(models.TextChoices):
    """What a rule watches. KPI kinds read `kpis.reads.kpis_compute`; the rest read RQ."""

    NEGATIVE_STOCK = "negative_stock", "Negative stock: (site, SKU) pairs with on_hand < 0"
    STOCKOUTS = "stockouts", "Stockouts: pairs with available <= 0"
    BELOW_REORDER_POINT = "below_reorder_point", "Pairs below their reorder point"
    STOCK_MISMATCH_RATE = "stock_mismatch_rate", "Stock mismatch rate (0 to 1)"
    MISMATCH_VALUE = "mismatch_value", "Stock mismatch value (currency)"
    ORDER_ACCURACY = "order_accuracy", "Order accuracy (0 to 1) falls below"
    RUNNING_OUT = "running_out", "SKUs that run out within N days (threshold: N)"
    FEED_SILENT = "feed_silent", "Feed silent: seconds since a source's newest event"
    INGEST_LAG = "ingest_lag", "Ingest lag p95 (seconds)"
    FAILED_JOBS = "failed_jobs", "Failed RQ jobs"
    QUEUE_BACKLOG = "queue_backlog", "Jobs waiting in the RQ queues"
    DEAD_LETTERS = "dead_letters", "Dead letters (rejected events) waiting"
    SLO_FAST_BURN = "slo_fast_burn", "SLO fast burn: budget burn rate over both 1 h and 5 min"
    SLO_SLOW_BURN = "slo_slow_burn", "SLO slow burn: budget burn rate over both 6 h and 30 min"


# Kinds that breach when the value falls below the threshold; all others breach above it.
KINDS_BREACHING_BELOW = {AlertKind.ORDER_ACCURACY, AlertKind.RUNNING_OUT}


class Severity(models.TextChoices):
    """How loudly an alert calls: critical wakes someone, warning is for working hours, info is
    for the record."""

    CRITICAL = "critical", "Critical"
    WARNING = "warning", "Warning"
    INFO = "info", "Info"


# Most severe first: sorting and "this severity and above" compare ranks.
SEVERITY_RANK = {Severity.CRITICAL: 0, Severity.WARNING: 1, Severity.INFO: 2}

WINDOW_CHOICES = [("1h", "1 hour"), ("24h", "24 hours"), ("7d", "7 days"), ("30d", "30 days")]


class AlertRule(models.Model):
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=32, choices=AlertKind.choices)
    site = models.ForeignKey(
        Site,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
        help_text="Empty: all sites together.",
    )
    threshold = models.DecimalField(
        max_digits=20,
        decimal_places=4,
        help_text=(
            "Breached above it (below it for order accuracy, and for SKUs running out: days "
            "of cover). Ratios are 0 to 1."
        ),
    )
    hold_seconds = models.PositiveIntegerField(
        default=0, help_text="How long the breach must last before an alert opens."
    )
    window = models.CharField(
        max_length=4, choices=WINDOW_CHOICES, default="1h", help_text="KPI window (KPI kinds)."
    )
    severity = models.CharField(
        max_length=16,
        choices=Severity.choices,
        default=Severity.WARNING,
        help_text="Critical: page at once. Warning: needs a look today. Info: for the record.",
    )
    enabled = models.BooleanField(default=True)
    repeat_minutes = models.PositiveIntegerField(
        "re-page every (minutes)",
        null=True,
        blank=True,
        help_text="While an alert is open and nobody acknowledged it, its firing notification "
        "is sent again this often. Empty: the deployment's default (30 minutes unless "
        "ALERT_REPEAT_MINUTES says otherwise). 0: never again.",
    )
    escalate_after_minutes = models.PositiveIntegerField(
        "escalate after (minutes)",
        null=True,
        blank=True,
        help_text="An alert still open and unacknowledged this long after it opened is also "
        "sent to the escalation channel. Empty: never escalated.",
    )
    escalation_channel = models.ForeignKey(
        "NotificationChannel",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        # No index: nothing looks rules up by it but a channel's deletion, over tens of rules
        # (and an index built in the migration would lock the table).
        db_index=False,
        related_name="+",
        help_text="Who is paged next (whatever severities and events that channel picks).",
    )

    class Meta:
        ordering = ["kind", "name"]

    def __str__(self) -> str:
        return self.name

    def clean(self):
        has_delay = self.escalate_after_minutes is not None
        if has_delay and not self.escalation_channel_id:
            raise ValidationError({"escalation_channel": "Say where to escalate to."})
        if self.escalation_channel_id and not has_delay:
            raise ValidationError({"escalate_after_minutes": "Say after how many minutes."})

    @property
    def scope_label(self) -> str:
        return self.site.code if self.site_id else "all sites"


class AlertRuleState(models.Model):
    """What the evaluator remembers about a rule (kept apart from the admin-edited rule)."""

    rule = models.OneToOneField(
        AlertRule, on_delete=models.CASCADE, primary_key=True, related_name="state"
    )
    breaching_since = models.DateTimeField(null=True, blank=True)
    last_value = models.DecimalField(max_digits=20, decimal_places=4, null=True, blank=True)
    last_evaluated_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.rule}: breaching since {self.breaching_since or '-'}"


class AlertStatus(models.TextChoices):
    OPEN = "open", "Open"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    RESOLVED = "resolved", "Resolved"


ACTIVE_STATUSES = (AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED)


class Alert(models.Model):
    rule = models.ForeignKey(AlertRule, null=True, on_delete=models.SET_NULL, related_name="alerts")
    # Copied from the rule when it opened: history stays readable if the rule changes.
    title = models.CharField(max_length=200)
    kind = models.CharField(max_length=32, choices=AlertKind.choices)
    severity = models.CharField(max_length=16, choices=Severity.choices, default=Severity.WARNING)
    site = models.ForeignKey(
        Site, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    threshold = models.DecimalField(max_digits=20, decimal_places=4)
    value = models.DecimalField(max_digits=20, decimal_places=4, help_text="When it opened.")
    last_value = models.DecimalField(max_digits=20, decimal_places=4, null=True, blank=True)
    status = models.CharField(max_length=16, choices=AlertStatus.choices)
    opened_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-opened_at", "-id"]
        constraints = [
            # One open (or acknowledged) alert per rule, and so per rule and scope.
            models.UniqueConstraint(
                fields=["rule"],
                condition=Q(status__in=["open", "acknowledged"]),
                name="alert_one_active_per_rule",
            ),
        ]
        indexes = [models.Index(fields=["status", "site"], name="alert_status_site_idx")]

    def __str__(self) -> str:
        return f"{self.title} ({self.get_status_display()})"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES


class AlertTransition(models.Model):
    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="transitions")
    from_status = models.CharField(max_length=16, blank=True)
    to_status = models.CharField(max_length=16, choices=AlertStatus.choices)
    at = models.DateTimeField()
    by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Empty: the alert evaluator.",
    )
    note = models.TextField(blank=True)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.from_status or 'new'} → {self.to_status}"


class NotificationEvent(models.TextChoices):
    FIRING = "firing", "Firing"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    RESOLVED = "resolved", "Resolved"


EVENT_OF_STATUS = {
    AlertStatus.OPEN: NotificationEvent.FIRING,
    AlertStatus.ACKNOWLEDGED: NotificationEvent.ACKNOWLEDGED,
    AlertStatus.RESOLVED: NotificationEvent.RESOLVED,
}


class PayloadFormat(models.TextChoices):
    GENERIC = "inventory_ops", "inventory_ops JSON (see docs/oncall.md)"
    ALERTMANAGER = "alertmanager", "Alertmanager webhook (version 4)"


class NotificationChannel(models.Model):
    """Where alert notifications go, configured by an operator in the admin."""

    class Kind(models.TextChoices):
        WEBHOOK = "webhook", "JSON webhook"
        SLACK = "slack", "Slack-compatible webhook"
        EMAIL = "email", "Email"

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    url = models.URLField(
        max_length=1000,
        blank=True,
        validators=[URLValidator(schemes=["http", "https"])],
        help_text="Webhooks: the URL notifications are POSTed to.",
    )
    payload_format = models.CharField(
        max_length=16,
        choices=PayloadFormat.choices,
        default=PayloadFormat.GENERIC,
        help_text="JSON webhooks only: the body they receive.",
    )
    # Webhook authentication. Stored as typed (the secret signs each delivery, so it must be
    # readable here) and never shown back: the admin only says whether each is set.
    signing_secret = models.CharField(
        max_length=200,
        blank=True,
        db_default="",
        default="",
        help_text="Webhooks: each delivery is signed with it (HMAC-SHA256, see docs/oncall.md).",
    )
    authorization = models.CharField(
        "Authorization header",
        max_length=1000,
        blank=True,
        db_default="",
        default="",
        help_text="Webhooks: sent as the Authorization header, e.g. 'Bearer 3f9c...'.",
    )
    recipients = models.TextField(
        blank=True, help_text="Email: addresses, separated by commas or one per line."
    )
    min_severity = models.CharField(
        "lowest severity",
        max_length=16,
        choices=Severity.choices,
        default=Severity.INFO,
        help_text="Alerts of this severity and above are sent (info: every alert).",
    )
    on_firing = models.BooleanField("when an alert fires", default=True)
    on_acknowledged = models.BooleanField("when it is acknowledged", default=True)
    on_resolved = models.BooleanField("when it is resolved", default=True)
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def recipient_list(self) -> list[str]:
        return [
            part.strip() for part in self.recipients.replace("\n", ",").split(",") if part.strip()
        ]

    def wants(self, *, event: str, severity: str) -> bool:
        wanted = {
            NotificationEvent.FIRING: self.on_firing,
            NotificationEvent.ACKNOWLEDGED: self.on_acknowledged,
            NotificationEvent.RESOLVED: self.on_resolved,
        }
        return (
            wanted.get(event, False) and SEVERITY_RANK[severity] <= SEVERITY_RANK[self.min_severity]
        )


class DeliveryReason(models.TextChoices):
    """Why a notification was sent: the alert changed, it is still firing, or it escalated."""

    TRANSITION = "transition", "Alert changed"
    REPEAT = "repeat", "Still firing (re-page)"
    ESCALATION = "escalation", "Escalated"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENDING = "sending", "Sending"
    RETRYING = "retrying", "Failed, will retry"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed, gave up"
    SUPPRESSED = "suppressed", "Not sent: silenced"
    CANCELLED = "cancelled", "Not sent: channel disabled"


class NotificationDelivery(models.Model):
    """One notification to one channel and every attempt's outcome (the admin's delivery log)."""

    channel = models.ForeignKey(
        NotificationChannel, on_delete=models.CASCADE, related_name="deliveries"
    )
    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="deliveries")
    transition = models.ForeignKey(
        AlertTransition, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    event = models.CharField(max_length=16, choices=NotificationEvent.choices)
    reason = models.CharField(
        max_length=16,
        choices=DeliveryReason.choices,
        default=DeliveryReason.TRANSITION,
        db_default=DeliveryReason.TRANSITION,
    )
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices)
    silence = models.ForeignKey(
        "Silence",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="deliveries",
        help_text="The silence that held it back.",
    )
    created_at = models.DateTimeField()
    attempts = models.PositiveIntegerField(default=0)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    response_status = models.PositiveIntegerField(null=True, blank=True)
    outcome = models.TextField(blank=True, help_text="The last attempt's answer or error.")

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "notification deliveries"
        indexes = [models.Index(fields=["status", "created_at"], name="delivery_status_idx")]

    def __str__(self) -> str:
        return f"{self.get_event_display()} of alert #{self.alert_id} to {self.channel}"


SILENCE_NEEDS_A_MATCHER = "A silence must name a rule, a site or both."
SILENCE_ENDS_AFTER_START = "The end must be after the start."


class SilenceQuerySet(models.QuerySet):
    def active_at(self, moment):
        return self.filter(starts_at__lte=moment, ends_at__gt=moment)

    def matching(self, alert: "Alert"):
        """Silences whose rule and site (each empty: any) match the alert's."""
        return self.filter(
            Q(rule__isnull=True) | Q(rule_id=alert.rule_id),
            Q(site__isnull=True) | Q(site_id=alert.site_id),
        )


class Silence(models.Model):
    """No notification for the alerts it matches between its start and end; they still show."""

    rule = models.ForeignKey(
        AlertRule,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="silences",
        help_text="Empty: any rule (then name a site).",
    )
    site = models.ForeignKey(
        Site,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
        help_text="Empty: any scope (then name a rule).",
    )
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    reason = models.TextField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField()
    ended_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Who ended it before its end time.",
    )
    # When the evaluator sent what the silence held back from alerts still firing at its end.
    end_handled_at = models.DateTimeField(null=True, blank=True)

    objects = SilenceQuerySet.as_manager()

    class Meta:
        ordering = ["-ends_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(rule__isnull=False) | Q(site__isnull=False),
                name="silence_matches_something",
                violation_error_message=SILENCE_NEEDS_A_MATCHER,
            ),
            models.CheckConstraint(
                condition=Q(ends_at__gt=models.F("starts_at")),
                name="silence_ends_after_start",
                violation_error_message=SILENCE_ENDS_AFTER_START,
            ),
        ]

    def __str__(self) -> str:
        return f"Silence #{self.pk} of {self.matcher_label}"

    def state_at(self, moment) -> str:
        if self.ends_at <= moment:
            return "ended"
        return "active" if self.starts_at <= moment else "scheduled"

    @property
    def matcher_label(self) -> str:
        parts = []
        if self.rule_id:
            parts.append(f"rule {self.rule}")
        if self.site_id:
            parts.append(f"site {self.site.code}")
        return " at ".join(parts)

    matcher_label.fget.short_description = "silences"
