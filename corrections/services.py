"""Writes of stock corrections; stock changes only via `movements_record`.

A correction's delta and value are worked out with its stock level locked, in the transaction
that applies it: a count-based correction never reads on_hand outside the lock. When a
correction waits for approval: `corrections.approval`. Count sheets: `countsheet_services`.
"""

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.utils import timezone

from core.db import run_atomic_with_retry
from core.limits import MAX_QTY
from corrections.approval import (
    APPROVE_CORRECTION,
    CORRECT_STOCK,
    needs_approval,
    pending_lock,
    permission_require,
    recordable_value_limit,
    stock_change_announce,
    unapproved_recent_values,
)
from corrections.exceptions import (
    CorrectionNotPending,
    CorrectionNotReversible,
    InvalidCorrection,
    SelfApprovalRefused,
)
from corrections.models import Correction, CorrectionStatus, ReasonCode
from ledger.models import MovementCause, MovementKind, Site, Sku
from ledger.selectors import rows_by_code
from ledger.services import MovementRequest, movements_record, stock_levels_lock


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


def correction_value_check(value: Decimal) -> None:
    """Refuse a correction worth more than `Correction.value` can record."""
    limit = recordable_value_limit(Correction)
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


def corrections_request(*, drafts: Sequence[CorrectionDraft], requested_by) -> list[Correction]:
    """Record corrections; apply at once those within the threshold, the rest wait for approval.

    All or nothing. Raises CorrectionNotAllowed, InvalidCorrection, UnknownSite or UnknownSku
    before writing anything.
    """
    permission_require(requested_by, CORRECT_STOCK, "correct stock")
    if not drafts:
        return []
    for draft in drafts:
        _validate(draft)
    return run_atomic_with_retry(lambda: _corrections_request_in_transaction(drafts, requested_by))


def _corrections_request_in_transaction(
    drafts: Sequence[CorrectionDraft], requested_by
) -> list[Correction]:
    sites = rows_by_code(Site, {draft.site for draft in drafts})
    skus = rows_by_code(Sku, {draft.sku for draft in drafts})
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
    stock_change_announce(touched)
    return corrections


def correction_approve(*, correction_id: int, approved_by, note: str = "") -> Correction:
    """Approve a pending correction and apply it; the delta of a count is taken now, locked."""
    permission_require(approved_by, APPROVE_CORRECTION, "approve corrections")

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
        stock_change_announce({correction.site.code})
        return correction

    return run_atomic_with_retry(work)


def correction_reject(*, correction_id: int, rejected_by, note: str) -> Correction:
    """Refuse a pending correction; stock does not change."""
    permission_require(rejected_by, APPROVE_CORRECTION, "reject corrections")
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


def _pending_correction_lock(correction_id: int) -> Correction:
    return pending_lock(
        Correction.objects.select_related("site", "sku"),
        correction_id,
        name="correction",
        not_pending=CorrectionNotPending,
    )


def correction_reverse(*, correction_id: int, requested_by, note: str = "") -> Correction:
    """Ask for a correction that undoes an applied one (same approval rules as any other)."""
    permission_require(requested_by, CORRECT_STOCK, "correct stock")
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
