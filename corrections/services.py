"""Writes of stock corrections and count sheets; stock changes only via `movements_record`.

A correction's delta and value are worked out with its stock level locked, in the transaction
that applies it: a count-based correction never reads on_hand outside the lock.

Approval covers every way a person changes stock by hand, so that it cannot be dodged:
- a correction waits when its value, added to the values of the corrections its requester
  applied to the same stock level without approval in the last 24 hours, is above the
  threshold (three corrections of 984 wait from the second one, as one of 2,952 would);
- a count sheet waits when the total value of its differences is above the threshold.
"""

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q, Sum
from django.utils import timezone

from core.db import run_atomic_with_retry
from core.limits import MAX_QTY
from core.notify import stock_changed_notify
from corrections.countsheets import CountRow
from corrections.exceptions import (
    CorrectionNotAllowed,
    CorrectionNotPending,
    CorrectionNotReversible,
    CountSheetAlreadyApplied,
    CountSheetNotPending,
    CountSheetNotPreviewed,
    InvalidCorrection,
    SelfApprovalRefused,
)
from corrections.models import (
    Correction,
    CorrectionStatus,
    CountSheet,
    CountSheetLine,
    CountSheetStatus,
    ReasonCode,
)
from ledger.exceptions import UnknownSite, UnknownSku
from ledger.models import MovementCause, MovementKind, Site, Sku
from ledger.services import MovementRequest, movements_record, stock_levels_lock

CORRECT_STOCK = "inventory_ops.correct_stock"
APPROVE_CORRECTION = "inventory_ops.approve_correction"
IMPORT_COUNTS = "inventory_ops.import_counts"
# Corrections of one requester on one stock level add up over this rolling period.
APPROVAL_WINDOW = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class CorrectionDraft:
    """A correction as a person asks it: exactly one of `counted_qty` or `delta`."""

    site: str
    sku: str
    reason: str
    note: str = ""
    counted_qty: int | None = None
    delta: int | None = None
    reverses_id: int | None = None


def approval_threshold() -> Decimal:
    return Decimal(str(settings.CORRECTION_APPROVAL_THRESHOLD))


def needs_approval(value: Decimal) -> bool:
    return value > approval_threshold()


def unapproved_recent_values(
    *, requested_by, pairs: set[tuple[int, int]], now: datetime
) -> dict[tuple[int, int], Decimal]:
    """Per (site id, SKU id): what `requested_by` applied there without approval lately.

    Only corrections that changed stock with no manager's decision count (a pending one has
    not changed stock; an approved one was seen by a manager). Read it with the levels locked
    so that two requests of the same person on the same level are counted one after the other.
    """
    if not pairs:
        return {}
    condition = Q()
    for site_id, sku_id in pairs:
        condition |= Q(site_id=site_id, sku_id=sku_id)
    rows = (
        Correction.objects.filter(
            condition,
            requested_by=requested_by,
            requested_at__gt=now - APPROVAL_WINDOW,
            status=CorrectionStatus.APPLIED,
            decided_by__isnull=True,
        )
        .values_list("site_id", "sku_id")
        .annotate(total=Sum("value"))
    )
    return {(site_id, sku_id): total for site_id, sku_id, total in rows}


def _require(user, permission: str, doing: str) -> None:
    if not user.has_perm(permission):
        raise CorrectionNotAllowed(f"you do not have permission to {doing}")


def _recordable_value_limit(model) -> Decimal:
    field = model._meta.get_field("value")
    return Decimal(10) ** (field.max_digits - field.decimal_places)


def correction_value_check(value: Decimal) -> None:
    """Refuse a correction worth more than `Correction.value` can record."""
    limit = _recordable_value_limit(Correction)
    if value >= limit:
        raise InvalidCorrection(
            f"the correction would be worth {value:,.2f}, more than can be recorded (under "
            f"{limit:,.0f}): correct fewer units at a time"
        )


def _validate(draft: CorrectionDraft) -> None:
    if draft.reason not in ReasonCode.values:
        raise InvalidCorrection(
            f"unknown reason {draft.reason!r}: use one of {', '.join(ReasonCode.values)}"
        )
    if (draft.counted_qty is None) == (draft.delta is None):
        raise InvalidCorrection("give either the counted quantity or a delta, not both")
    if draft.counted_qty is not None and draft.counted_qty < 0:
        raise InvalidCorrection("the counted quantity cannot be negative")
    if draft.counted_qty is not None and draft.counted_qty > MAX_QTY:
        raise InvalidCorrection(f"the counted quantity must be at most {MAX_QTY}")
    if draft.delta is not None and draft.delta == 0:
        raise InvalidCorrection("a delta of 0 changes nothing")
    if draft.delta is not None and abs(draft.delta) > MAX_QTY:
        raise InvalidCorrection(f"a delta must be -{MAX_QTY} to {MAX_QTY}")


def _by_code(model, codes: set[str], missing_error) -> dict[str, object]:
    found = {obj.code: obj for obj in model.objects.filter(code__in=codes)}
    if missing := codes - found.keys():
        raise missing_error(missing)
    return found


def _movement_request(correction: Correction, delta: int, user_id: int) -> MovementRequest:
    return MovementRequest(
        site=correction.site.code,
        sku=correction.sku.code,
        kind=MovementKind.CORRECTION,
        on_hand_delta=delta,
        occurred_at=correction.applied_at,
        cause=MovementCause.CORRECTION,
        cause_ref=f"correction:{correction.pk}",
        user_id=user_id,
    )


def _announce_after_commit(site_codes: set[str]) -> None:
    if site_codes:
        stock_changed_notify(site_codes=site_codes)


def corrections_request(*, drafts: Sequence[CorrectionDraft], requested_by) -> list[Correction]:
    """Record corrections; apply at once those within the threshold, the rest wait for approval.

    All or nothing. Raises CorrectionNotAllowed, InvalidCorrection, UnknownSite or UnknownSku
    before writing anything.
    """
    _require(requested_by, CORRECT_STOCK, "correct stock")
    if not drafts:
        return []
    for draft in drafts:
        _validate(draft)
    return run_atomic_with_retry(lambda: _corrections_request_in_transaction(drafts, requested_by))


def _corrections_request_in_transaction(
    drafts: Sequence[CorrectionDraft], requested_by
) -> list[Correction]:
    sites = _by_code(Site, {draft.site for draft in drafts}, UnknownSite)
    skus = _by_code(Sku, {draft.sku for draft in drafts}, UnknownSku)
    pairs = {(sites[d.site].pk, skus[d.sku].pk) for d in drafts}
    levels = stock_levels_lock(pairs)
    now = timezone.now()
    # What this requester already changed on each level without approval (drafts of this call
    # included, as they apply): a large correction split in small ones still waits.
    unapproved = defaultdict(
        Decimal, unapproved_recent_values(requested_by=requested_by, pairs=pairs, now=now)
    )
    corrections, movement_requests, touched = [], [], set()
    for draft in drafts:
        site, sku = sites[draft.site], skus[draft.sku]
        level = levels[(site.pk, sku.pk)]
        delta = draft.delta if draft.delta is not None else draft.counted_qty - level.on_hand
        value = abs(delta) * sku.unit_cost
        correction_value_check(value)
        waits = needs_approval(unapproved[(site.pk, sku.pk)] + value)
        correction = Correction(
            site=site,
            sku=sku,
            counted_qty=draft.counted_qty,
            delta=draft.delta,
            reason=draft.reason,
            note=draft.note,
            requested_by=requested_by,
            requested_at=now,
            value=value,
            reverses_id=draft.reverses_id,
            status=CorrectionStatus.PENDING if waits else CorrectionStatus.APPLIED,
        )
        if correction.status == CorrectionStatus.APPLIED:
            unapproved[(site.pk, sku.pk)] += value
            correction.applied_at = now
            correction.on_hand_before = level.on_hand
            correction.applied_delta = delta
            level.on_hand += delta  # later drafts of this call see this level's new value
            touched.add(site.code)
        try:
            with transaction.atomic():
                correction.save()
        except IntegrityError:
            raise CorrectionNotReversible(
                f"correction #{draft.reverses_id} is already reversed (or a reversal waits)"
            ) from None
        if correction.status == CorrectionStatus.APPLIED:
            movement_requests.append(_movement_request(correction, delta, requested_by.pk))
        corrections.append(correction)
    movements_record(requests=movement_requests)
    _announce_after_commit(touched)
    return corrections


def correction_approve(*, correction_id: int, approved_by, note: str = "") -> Correction:
    """Approve a pending correction and apply it; the delta of a count is taken now, locked."""
    _require(approved_by, APPROVE_CORRECTION, "approve corrections")

    def work() -> Correction:
        correction = _pending_correction_lock(correction_id)
        if correction.requested_by_id == approved_by.pk:
            raise SelfApprovalRefused()
        level = stock_levels_lock({(correction.site_id, correction.sku_id)})[
            (correction.site_id, correction.sku_id)
        ]
        delta = (
            correction.delta
            if correction.delta is not None
            else correction.counted_qty - level.on_hand
        )
        now = timezone.now()
        correction.status = CorrectionStatus.APPLIED
        correction.decided_by = approved_by
        correction.decided_at = correction.applied_at = now
        correction.decision_note = note
        correction.on_hand_before = level.on_hand
        correction.applied_delta = delta
        correction.save()
        movements_record(requests=[_movement_request(correction, delta, approved_by.pk)])
        _announce_after_commit({correction.site.code})
        return correction

    return run_atomic_with_retry(work)


def correction_reject(*, correction_id: int, rejected_by, note: str) -> Correction:
    """Refuse a pending correction; stock does not change."""
    _require(rejected_by, APPROVE_CORRECTION, "reject corrections")
    if not note.strip():
        raise InvalidCorrection("say why the correction is rejected")

    def work() -> Correction:
        correction = _pending_correction_lock(correction_id)
        correction.status = CorrectionStatus.REJECTED
        correction.decided_by = rejected_by
        correction.decided_at = timezone.now()
        correction.decision_note = note
        correction.save()
        return correction

    return run_atomic_with_retry(work)


def _pending_lock(queryset, pk: int, *, name: str, not_pending: type[Exception]):
    """Lock a correction or count sheet waiting for approval, or say why it cannot be decided."""
    waiting = queryset.select_for_update().filter(pk=pk).first()
    if waiting is None:
        raise InvalidCorrection(f"no {name} #{pk}")
    if waiting.status != CorrectionStatus.PENDING:  # the same value for count sheets
        raise not_pending(pk, waiting.get_status_display().lower())
    return waiting


def _pending_correction_lock(correction_id: int) -> Correction:
    return _pending_lock(
        Correction.objects.select_related("site", "sku"),
        correction_id,
        name="correction",
        not_pending=CorrectionNotPending,
    )


def correction_reverse(*, correction_id: int, requested_by, note: str = "") -> Correction:
    """Ask for a correction that undoes an applied one (same approval rules as any other)."""
    _require(requested_by, CORRECT_STOCK, "correct stock")
    original = Correction.objects.select_related("site", "sku").filter(pk=correction_id).first()
    if original is None or original.status != CorrectionStatus.APPLIED:
        raise CorrectionNotReversible(f"correction #{correction_id} is not applied")
    if not original.applied_delta:
        raise CorrectionNotReversible(
            f"correction #{correction_id} changed nothing, so there is nothing to reverse"
        )
    if original.reversals.exclude(status=CorrectionStatus.REJECTED).exists():
        raise CorrectionNotReversible(
            f"correction #{correction_id} is already reversed (or a reversal waits)"
        )
    draft = CorrectionDraft(
        site=original.site.code,
        sku=original.sku.code,
        reason=original.reason,
        delta=-original.applied_delta,
        note=f"Reverses correction #{original.pk}. {note}".strip(),
        reverses_id=original.pk,
    )
    return corrections_request(drafts=[draft], requested_by=requested_by)[0]


def count_sheet_create(*, filename: str, rows: Sequence[CountRow], uploaded_by) -> CountSheet:
    """Store a parsed, valid count sheet for preview; nothing changes stock yet."""
    _require(uploaded_by, IMPORT_COUNTS, "import count sheets")
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
    _require(applied_by, IMPORT_COUNTS, "import count sheets")

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
        if value >= (limit := _recordable_value_limit(CountSheet)):
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
    _require(approved_by, APPROVE_CORRECTION, "approve count sheets")

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
    _require(rejected_by, APPROVE_CORRECTION, "reject count sheets")
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
    return _pending_lock(
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
    _announce_after_commit({line.site.code for line in lines})
    return sheet


def count_sheet_discard(*, sheet_id: int, discarded_by) -> None:
    """Drop a sheet that was previewed but not applied (nor submitted)."""
    _require(discarded_by, IMPORT_COUNTS, "import count sheets")
    with transaction.atomic():
        sheet = CountSheet.objects.select_for_update().get(pk=sheet_id)
        _previewed_require(sheet, "discarded")
        sheet.delete()
