"""Writes of count sheets: stored for preview, then applied as `stock.counted` movements, all or
nothing, or left waiting for a manager when their differences are worth more than the approval
threshold (`corrections.approval`). Stock changes only via `movements_record`.
"""

from collections.abc import Sequence
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from core.db import run_atomic_with_retry
from corrections.approval import (
    APPROVE_CORRECTION,
    IMPORT_COUNTS,
    needs_approval,
    pending_lock,
    permission_require,
    recordable_value_limit,
    stock_change_announce,
)
from corrections.countsheets import CountRow
from corrections.exceptions import (
    CountSheetAlreadyApplied,
    CountSheetNotPending,
    CountSheetNotPreviewed,
    InvalidCorrection,
    SelfApprovalRefused,
)
from corrections.models import CountSheet, CountSheetLine, CountSheetStatus
from ledger.models import MovementCause, MovementKind
from ledger.services import MovementRequest, movements_record, stock_levels_lock


def count_sheet_create(*, filename: str, rows: Sequence[CountRow], uploaded_by) -> CountSheet:
    """Store a parsed, valid count sheet for preview; nothing changes stock yet."""
    permission_require(uploaded_by, IMPORT_COUNTS, "import count sheets")
    with transaction.atomic():
        sheet = CountSheet.objects.create(
            filename=filename[:255],
            status=CountSheetStatus.PREVIEWED,
            uploaded_by=uploaded_by,
            uploaded_at=timezone.now(),
        )
        CountSheetLine.objects.bulk_create(
            [
                CountSheetLine(
                    sheet=sheet,
                    line_number=row.line_number,
                    site_id=row.site_id,
                    sku_id=row.sku_id,
                    counted_qty=row.counted_qty,
                )
                for row in rows
            ],
            batch_size=1000,
        )
    return sheet


def count_sheet_apply(*, sheet_id: int, applied_by) -> CountSheet:
    """Apply every line of a previewed sheet as a `stock.counted` movement, all or nothing.

    If the total value of its differences (taken under the row locks) is above the approval
    threshold, nothing changes stock: the sheet waits for a manager (`count_sheet_approve`).
    """
    permission_require(applied_by, IMPORT_COUNTS, "import count sheets")

    def work() -> CountSheet:
        sheet = CountSheet.objects.select_for_update().get(pk=sheet_id)
        _previewed_require(sheet, "applied")
        lines = list(sheet.lines.select_related("site", "sku").order_by("line_number"))
        levels = stock_levels_lock({(line.site_id, line.sku_id) for line in lines})
        value = sum(
            (
                abs(line.counted_qty - levels[(line.site_id, line.sku_id)].on_hand)
                * line.sku.unit_cost
                for line in lines
            ),
            Decimal(0),
        )
        if value >= (limit := recordable_value_limit(CountSheet)):
            raise InvalidCorrection(
                f"the sheet's differences would be worth {value:,.2f}, more than can be "
                f"recorded (under {limit:,.0f}): split it into several sheets"
            )
        sheet.submitted_by = applied_by
        sheet.submitted_at = timezone.now()
        sheet.value = value
        if needs_approval(value):
            sheet.status = CountSheetStatus.PENDING
            sheet.save(update_fields=["status", "submitted_by", "submitted_at", "value"])
            return sheet
        return _count_sheet_apply_locked(sheet, lines, applied_by)

    return run_atomic_with_retry(work)


def count_sheet_approve(*, sheet_id: int, approved_by, note: str = "") -> CountSheet:
    """Approve a waiting sheet and apply it; its counts are compared with stock now, locked."""
    permission_require(approved_by, APPROVE_CORRECTION, "approve count sheets")

    def work() -> CountSheet:
        sheet = _pending_sheet_lock(sheet_id)
        if approved_by.pk in (sheet.submitted_by_id, sheet.uploaded_by_id):
            raise SelfApprovalRefused()
        lines = list(sheet.lines.select_related("site", "sku").order_by("line_number"))
        sheet.decided_by = approved_by
        sheet.decided_at = timezone.now()
        sheet.decision_note = note
        return _count_sheet_apply_locked(sheet, lines, approved_by)

    return run_atomic_with_retry(work)


def count_sheet_reject(*, sheet_id: int, rejected_by, note: str) -> CountSheet:
    """Refuse a waiting sheet; stock does not change, and the sheet is kept."""
    permission_require(rejected_by, APPROVE_CORRECTION, "reject count sheets")
    if not note.strip():
        raise InvalidCorrection("say why the count sheet is rejected")

    def work() -> CountSheet:
        sheet = _pending_sheet_lock(sheet_id)
        sheet.status = CountSheetStatus.REJECTED
        sheet.decided_by = rejected_by
        sheet.decided_at = timezone.now()
        sheet.decision_note = note
        sheet.save(update_fields=["status", "decided_by", "decided_at", "decision_note"])
        return sheet

    return run_atomic_with_retry(work)


def _previewed_require(sheet: CountSheet, doing: str) -> None:
    if sheet.status == CountSheetStatus.APPLIED:
        raise CountSheetAlreadyApplied(sheet.pk)
    if sheet.status != CountSheetStatus.PREVIEWED:
        raise CountSheetNotPreviewed(sheet.pk, sheet.get_status_display().lower(), doing)


def _pending_sheet_lock(sheet_id: int) -> CountSheet:
    return pending_lock(
        CountSheet.objects.all(), sheet_id, name="count sheet", not_pending=CountSheetNotPending
    )


def _count_sheet_apply_locked(sheet: CountSheet, lines, applied_by) -> CountSheet:
    """Apply the lines as counts. Precondition: in a transaction holding the sheet's row lock."""
    now = timezone.now()
    applied = movements_record(
        requests=[
            MovementRequest(
                site=line.site.code,
                sku=line.sku.code,
                kind=MovementKind.COUNTED,
                counted_qty=line.counted_qty,
                occurred_at=now,
                cause=MovementCause.COUNT,
                cause_ref=f"countsheet:{sheet.pk}",
                user_id=applied_by.pk,
            )
            for line in lines
        ]
    )
    for line, movement in zip(lines, applied, strict=True):
        line.on_hand_before = movement.on_hand_before
        line.applied_delta = movement.on_hand_delta
    CountSheetLine.objects.bulk_update(lines, ["on_hand_before", "applied_delta"], batch_size=1000)
    sheet.status = CountSheetStatus.APPLIED
    sheet.applied_by = applied_by
    sheet.applied_at = now
    sheet.save()
    stock_change_announce({line.site.code for line in lines})
    return sheet


def count_sheet_discard(*, sheet_id: int, discarded_by) -> None:
    """Drop a sheet that was previewed but not applied (nor submitted)."""
    permission_require(discarded_by, IMPORT_COUNTS, "import count sheets")
    with transaction.atomic():
        sheet = CountSheet.objects.select_for_update().get(pk=sheet_id)
        _previewed_require(sheet, "discarded")
        sheet.delete()
