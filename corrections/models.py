"""Stock corrections and count sheets: how people change stock, with a full trail.

Rows here are written only by `corrections.services` and `corrections.countsheet_services`.
An applied correction is never edited or deleted (the database refuses it, see migration
0003); it is undone by a reversing correction.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q

from ledger.models import Site, Sku


class ReasonCode(models.TextChoices):
    RECOUNT = "recount", "Recount"
    DAMAGED = "damaged", "Damaged"
    LOST = "lost", "Lost"
    FOUND = "found", "Found"
    EXPIRED = "expired", "Expired"
    DATA_FIX = "data-fix", "Data fix"


class CorrectionStatus(models.TextChoices):
    PENDING = "pending", "Waiting for approval"
    APPLIED = "applied", "Applied"
    REJECTED = "rejected", "Rejected"


class Correction(models.Model):
    """A change of one stock level asked by a person: a counted quantity or a delta."""

    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="+")
    sku = models.ForeignKey(Sku, on_delete=models.PROTECT, related_name="+")
    counted_qty = models.BigIntegerField(
        null=True, blank=True, help_text="What was counted; on_hand is set to it."
    )
    delta = models.BigIntegerField(null=True, blank=True, help_text="Units to add (or remove).")
    reason = models.CharField(max_length=16, choices=ReasonCode.choices)
    note = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=CorrectionStatus.choices)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    requested_at = models.DateTimeField()
    # Value of the change at unit cost, taken under the row lock when it was requested.
    value = models.DecimalField(max_digits=20, decimal_places=4)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Who approved or rejected it (empty when it applied within the threshold).",
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_note = models.TextField(blank=True)
    applied_at = models.DateTimeField(null=True, blank=True)
    on_hand_before = models.BigIntegerField(null=True, blank=True)
    applied_delta = models.BigIntegerField(null=True, blank=True)
    reverses = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="reversals"
    )

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(counted_qty__isnull=False, delta__isnull=True, counted_qty__gte=0))
                | (Q(counted_qty__isnull=True, delta__isnull=False) & ~Q(delta=0)),
                name="correction_counted_or_nonzero_delta",
            ),
            # A correction is reversed at most once (a rejected reversal does not count).
            models.UniqueConstraint(
                fields=["reverses"],
                condition=Q(reverses__isnull=False) & ~Q(status="rejected"),
                name="correction_reversed_once",
            ),
        ]
        indexes = [models.Index(fields=["status", "id"], name="correction_status_idx")]

    def __str__(self) -> str:
        return f"Correction #{self.pk} {self.site.code}/{self.sku.code}"

    @property
    def asked(self) -> str:
        if self.counted_qty is not None:
            return f"counted {self.counted_qty}"
        return f"{self.delta:+d}"

    @property
    def on_hand_after(self) -> int | None:
        if self.on_hand_before is None or self.applied_delta is None:
            return None
        return self.on_hand_before + self.applied_delta


class CountSheetStatus(models.TextChoices):
    PREVIEWED = "previewed", "Previewed, not applied"
    PENDING = "pending", "Waiting for approval"
    APPLIED = "applied", "Applied"
    REJECTED = "rejected", "Rejected"


class CountSheet(models.Model):
    """A CSV of counted quantities (site, sku, counted_qty), applied as `stock.counted`."""

    filename = models.CharField(max_length=255)
    status = models.CharField(max_length=16, choices=CountSheetStatus.choices)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    uploaded_at = models.DateTimeField()
    applied_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    applied_at = models.DateTimeField(null=True, blank=True)
    # Who asked to apply it, and the total value of its differences then (under the row locks):
    # above the approval threshold the sheet waits for a manager, as a correction does.
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    submitted_at = models.DateTimeField(null=True, blank=True)
    value = models.DecimalField(max_digits=20, decimal_places=4, null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Who approved or rejected it (empty when it applied within the threshold).",
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_note = models.TextField(blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["status", "id"], name="countsheet_status_idx")]

    def __str__(self) -> str:
        return f"Count sheet #{self.pk} ({self.filename})"


class CountSheetLine(models.Model):
    sheet = models.ForeignKey(CountSheet, on_delete=models.CASCADE, related_name="lines")
    line_number = models.PositiveIntegerField(help_text="Line in the CSV file (header is 1).")
    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="+")
    sku = models.ForeignKey(Sku, on_delete=models.PROTECT, related_name="+")
    counted_qty = models.BigIntegerField()
    # Filled in when the sheet is applied, from the ledger under the row lock.
    on_hand_before = models.BigIntegerField(null=True, blank=True)
    applied_delta = models.BigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["sheet", "line_number"]
        constraints = [
            models.UniqueConstraint(
                fields=["sheet", "site", "sku"], name="count_line_unique_level"
            ),
        ]

    def __str__(self) -> str:
        return f"line {self.line_number}: {self.site_id}/{self.sku_id} = {self.counted_qty}"
