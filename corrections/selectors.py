"""Reads for the corrections screens: previews of what a correction or sheet would do."""

from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Count
from django.utils import timezone

from corrections.approval import needs_approval, unapproved_recent_values
from corrections.models import (
    Correction,
    CorrectionStatus,
    CountSheet,
    CountSheetStatus,
)
from corrections.services import correction_value_check
from ledger.models import Site, Sku, StockLevel


@dataclass(frozen=True)
class CorrectionPreview:
    site: Site
    sku: Sku
    on_hand_before: int
    delta: int
    value: Decimal
    needs_approval: bool
    # What the same person applied to this level without approval in the last 24 hours.
    unapproved_recent: Decimal = Decimal(0)

    @property
    def on_hand_after(self) -> int:
        return self.on_hand_before + self.delta


def correction_preview(
    *,
    site: Site,
    sku: Sku,
    counted_qty: int | None = None,
    delta: int | None = None,
    requested_by=None,
) -> CorrectionPreview:
    """What the correction would do now (the applied delta is taken again under the lock).

    Raises InvalidCorrection if it would be worth more than a correction can record, as
    applying it would.
    """
    on_hand = (
        StockLevel.objects.filter(site=site, sku=sku).values_list("on_hand", flat=True).first() or 0
    )
    change = delta if delta is not None else counted_qty - on_hand
    value = abs(change) * sku.unit_cost
    correction_value_check(value)
    recent = Decimal(0)
    if requested_by is not None:
        recent = unapproved_recent_values(
            requested_by=requested_by, pairs={(site.pk, sku.pk)}, now=timezone.now()
        ).get((site.pk, sku.pk), Decimal(0))
    return CorrectionPreview(
        site, sku, on_hand, change, value, needs_approval(recent + value), recent
    )


@dataclass(frozen=True)
class CountLinePreview:
    line_number: int
    site: Site
    sku: Sku
    counted_qty: int
    on_hand: int
    on_hand_before: int | None
    applied_delta: int | None

    @property
    def difference(self) -> int:
        if self.applied_delta is not None:
            return self.applied_delta
        return self.counted_qty - self.on_hand

    @property
    def is_mismatch(self) -> bool:
        return self.difference != 0

    @property
    def value(self) -> Decimal:
        return abs(self.difference) * self.sku.unit_cost


def count_sheet_preview(*, sheet: CountSheet) -> list[CountLinePreview]:
    """Each line with today's on_hand (or, once applied, what it found under the lock)."""
    lines = list(sheet.lines.select_related("site", "sku"))
    on_hand = {
        (site_id, sku_id): value
        for site_id, sku_id, value in StockLevel.objects.filter(
            site_id__in={line.site_id for line in lines},
            sku_id__in={line.sku_id for line in lines},
        ).values_list("site_id", "sku_id", "on_hand")
    }
    return [
        CountLinePreview(
            line_number=line.line_number,
            site=line.site,
            sku=line.sku,
            counted_qty=line.counted_qty,
            on_hand=on_hand.get((line.site_id, line.sku_id), 0),
            on_hand_before=line.on_hand_before,
            applied_delta=line.applied_delta,
        )
        for line in lines
    ]


def movement_origins(*, cause_refs: set[str]) -> dict[str, Correction | CountSheet]:
    """The corrections and count sheets behind movements, by `cause_ref`, in two queries.

    For a stock level's lineage: who asked, why, and who approved.
    """
    correction_ids, sheet_ids = set(), set()
    for ref in cause_refs:
        kind, _, number = ref.partition(":")
        if number.isdigit():
            if kind == "correction":
                correction_ids.add(int(number))
            elif kind == "countsheet":
                sheet_ids.add(int(number))
    origins: dict[str, Correction | CountSheet] = {}
    if correction_ids:
        for correction in Correction.objects.filter(pk__in=correction_ids).select_related(
            "requested_by", "decided_by"
        ):
            origins[f"correction:{correction.pk}"] = correction
    if sheet_ids:
        for sheet in CountSheet.objects.filter(pk__in=sheet_ids).select_related(
            "uploaded_by", "submitted_by", "decided_by"
        ):
            origins[f"countsheet:{sheet.pk}"] = sheet
    return origins


@dataclass(frozen=True)
class ApprovalsWaiting:
    corrections: list[Correction]
    count_sheets: list[CountSheet]

    @property
    def count(self) -> int:
        return len(self.corrections) + len(self.count_sheets)


def approvals_waiting_count() -> int:
    """How many corrections and count sheets wait for a manager (two indexed counts)."""
    return (
        Correction.objects.filter(status=CorrectionStatus.PENDING).count()
        + CountSheet.objects.filter(status=CountSheetStatus.PENDING).count()
    )


def approvals_waiting() -> ApprovalsWaiting:
    """Everything waiting for a manager's decision, oldest first."""
    return ApprovalsWaiting(
        corrections=list(
            Correction.objects.filter(status=CorrectionStatus.PENDING)
            .select_related("site", "sku", "requested_by")
            .order_by("id")
        ),
        count_sheets=list(
            CountSheet.objects.filter(status=CountSheetStatus.PENDING)
            .select_related("uploaded_by", "submitted_by")
            .annotate(line_count=Count("lines"))
            .order_by("id")
        ),
    )
