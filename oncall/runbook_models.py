"""Runbooks with their versions, the diagnostics they run, and the remediation log (models of
the oncall app, re-exported by oncall.models)."""

from django.conf import settings
from django.db import models


class DiagnosticName(models.TextChoices):
    """Live checks a runbook page runs (see `oncall.selectors.diagnostics_run`)."""

    NEGATIVE_STOCK = "negative_stock", "Negative stock and its last movements"
    COUNT_MISMATCHES = "count_mismatches", "Recent count mismatches"
    FAILED_JOBS = "failed_jobs", "Failed RQ jobs"
    QUEUES = "queues", "Queue depths and worker heartbeats"
    SILENT_SOURCES = "silent_sources", "Feed sources silent for N minutes"
    DEAD_LETTERS = "dead_letters", "Dead letters by reason"
    READINESS = "readiness", "Database and Redis reachability"
    RUNNING_OUT = "running_out", "SKUs that run out soonest, with what to reorder"


class Runbook(models.Model):
    slug = models.SlugField(max_length=100, unique=True)
    title = models.CharField(max_length=200)
    owner = models.CharField(max_length=200, help_text="Who keeps it right (team or person).")
    last_reviewed = models.DateField()
    alert_kinds = models.JSONField(default=list, blank=True, help_text="Alert kinds it covers.")
    diagnostics = models.JSONField(
        default=list, blank=True, help_text="Live diagnostics its page runs."
    )
    body = models.TextField(help_text="Markdown; rendered sanitised.")
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["title"]

    def __str__(self) -> str:
        return self.title


class RunbookVersion(models.Model):
    """A runbook as it was after one edit: every edit is kept."""

    runbook = models.ForeignKey(Runbook, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    title = models.CharField(max_length=200)
    owner = models.CharField(max_length=200)
    last_reviewed = models.DateField()
    alert_kinds = models.JSONField(default=list)
    diagnostics = models.JSONField(default=list)
    body = models.TextField()
    edited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Empty: loaded from docs/runbooks by load_runbooks.",
    )
    edited_at = models.DateTimeField()

    class Meta:
        ordering = ["runbook", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["runbook", "number"], name="runbook_version_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.runbook.slug} v{self.number}"


class RemediationKind(models.TextChoices):
    REQUEUE_FAILED_JOBS = "requeue_failed_jobs", "Requeue failed jobs"
    REPLAY_DEAD_LETTERS = "replay_dead_letters", "Replay dead letters"
    REBUILD_KPIS = "rebuild_kpis", "Rebuild KPIs for a site"


class RemediationStatus(models.TextChoices):
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class RemediationAction(models.Model):
    """One remediation run by a person from the console or a runbook: who, when, what, result."""

    kind = models.CharField(max_length=32, choices=RemediationKind.choices)
    target = models.CharField(max_length=500, blank=True, help_text="What it acted on.")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    requested_at = models.DateTimeField()
    status = models.CharField(max_length=16, choices=RemediationStatus.choices)
    result = models.TextField(blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-requested_at", "-id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} by {self.actor} ({self.status})"
