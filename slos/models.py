"""What the service level objectives count, and their targets.

`SloCount` holds good and total events of one SLO over one minute and over one day (UTC): a
writer adds to both, so a 28-day read sums at most 28 day rows and one partial day of minutes,
and a burn-rate window reads only its minutes. Counted at the time of measurement (when a POST
was answered, an event applied, a snapshot compared), not by event time.
"""

from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from core.timechecks import storable_time_check

MINUTE_S = 60
DAY_S = 86400


class Slo(models.TextChoices):
    INGEST_AVAILABILITY = "ingest_availability", "Ingest availability"
    FRESHNESS = "freshness", "Freshness"
    CORRECTNESS = "correctness", "Correctness"


DEFAULT_TARGETS = {
    Slo.INGEST_AVAILABILITY: Decimal("0.999"),
    Slo.FRESHNESS: Decimal("0.99"),
    Slo.CORRECTNESS: Decimal("0.98"),
}

DESCRIPTIONS = {
    Slo.INGEST_AVAILABILITY: "Share of ingest POSTs not answered 5xx",
    Slo.FRESHNESS: "Share of events applied within 60 s of being received",
    Slo.CORRECTNESS: "Share of stock.snapshot lines equal to on-hand when compared",
}


class SloCount(models.Model):
    slo = models.CharField(max_length=32, choices=Slo.choices)
    span_s = models.IntegerField()  # MINUTE_S or DAY_S
    start = models.DateTimeField()
    good = models.BigIntegerField(default=0)
    total = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            storable_time_check("start", name="slo_count_start_storable"),
            models.UniqueConstraint(fields=["slo", "span_s", "start"], name="slo_count_key"),
        ]
        # A read selects time ranges of every SLO at once: each range is one scan of this.
        indexes = [models.Index(fields=["span_s", "start"], name="slo_count_span_start_idx")]

    def __str__(self) -> str:
        return f"{self.slo} {self.span_s}s at {self.start:%Y-%m-%d %H:%M}: {self.good}/{self.total}"


class SloTarget(models.Model):
    """The target of one SLO, editable in the admin (the defaults are created by migration)."""

    slo = models.CharField(max_length=32, choices=Slo.choices, unique=True)
    target = models.DecimalField(
        max_digits=7,
        decimal_places=6,
        validators=[MinValueValidator(Decimal("0.5")), MaxValueValidator(Decimal("0.999999"))],
        help_text="Share of good events to keep over 28 days, e.g. 0.999. Its error budget is "
        "1 - target.",
    )
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["slo"]
        verbose_name = "SLO target"

    def __str__(self) -> str:
        return f"{self.get_slo_display()}: {self.target}"
