import threading
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import DatabaseError, connection, transaction
from django.db.models import F

from core.notify import notify_now, stock_changed
from core.roles import MANAGERS, ON_CALL, STOCK_STAFF
from corrections.exceptions import (
    CorrectionNotAllowed,
    CorrectionNotPending,
    CorrectionNotReversible,
    InvalidCorrection,
    SelfApprovalRefused,
)
from corrections.models import Correction, CorrectionStatus
from corrections.services import (
    CorrectionDraft,
    correction_approve,
    correction_reject,
    correction_reverse,
    corrections_request,
)
from ledger.exceptions import UnknownSku
from ledger.models import Movement, MovementKind, StockLevel
from ledger.selectors import ledger_differences
from ledger.services import movements_record
from tests.builders import receive, site_make, sku_make, user_make

pytestmark = pytest.mark.django_db


def on_hand(site, sku) -> int:
    return StockLevel.objects.get(site=site, sku=sku).on_hand


def stocked(qty=10, unit_cost="2.00"):
    site, sku = site_make(), sku_make(unit_cost=unit_cost)
    movements_record(requests=[receive(site, sku, qty)])
    return site, sku


def draft(site, sku, **fields) -> CorrectionDraft:
    return CorrectionDraft(
        site=site.code, sku=sku.code, reason=fields.pop("reason", "recount"), **fields
    )


def test_a_counted_correction_within_the_threshold_applies_as_a_movement_carrying_the_user():
    site, sku = stocked(10)
    staff = user_make(role=STOCK_STAFF)

    [correction] = corrections_request(drafts=[draft(site, sku, counted_qty=7)], requested_by=staff)

    assert on_hand(site, sku) == 7
    assert correction.status == CorrectionStatus.APPLIED
    assert (correction.on_hand_before, correction.applied_delta) == (10, -3)
    assert correction.value == Decimal("6.00")
    movement = Movement.objects.get(kind=MovementKind.CORRECTION)
    assert movement.cause_ref == f"correction:{correction.pk}"
    assert (movement.on_hand_delta, movement.user_id) == (-3, staff.pk)
    assert ledger_differences()[1] == []


def test_a_delta_correction_adds_to_stock():
    site, sku = stocked(10)

    corrections_request(
        drafts=[draft(site, sku, delta=-2, reason="damaged")],
        requested_by=user_make(role=STOCK_STAFF),
    )

    assert on_hand(site, sku) == 8


def test_above_the_threshold_it_waits_and_stock_does_not_change(settings):
    settings.CORRECTION_APPROVAL_THRESHOLD = "100"
    site, sku = stocked(10, unit_cost="50.00")

    [correction] = corrections_request(
        drafts=[draft(site, sku, delta=-3, reason="lost")], requested_by=user_make(role=STOCK_STAFF)
    )

    assert correction.status == CorrectionStatus.PENDING
    assert correction.value == Decimal("150.00")
    assert on_hand(site, sku) == 10
    assert not Movement.objects.filter(kind=MovementKind.CORRECTION).exists()


def test_a_different_manager_approves_and_the_count_is_compared_with_stock_at_approval(settings):
    settings.CORRECTION_APPROVAL_THRESHOLD = "100"
    site, sku = stocked(10, unit_cost="50.00")
    staff, manager = user_make(role=STOCK_STAFF), user_make(role=MANAGERS)
    [correction] = corrections_request(drafts=[draft(site, sku, counted_qty=4)], requested_by=staff)
    movements_record(requests=[receive(site, sku, 2)])  # stock moves while it waits: 12

    approved = correction_approve(correction_id=correction.pk, approved_by=manager, note="ok")

    assert on_hand(site, sku) == 4
    assert approved.status == CorrectionStatus.APPLIED
    assert (approved.on_hand_before, approved.applied_delta) == (12, -8)
    assert approved.decided_by == manager
    assert Movement.objects.get(kind=MovementKind.CORRECTION).user_id == manager.pk


def test_the_requester_cannot_approve_their_own_correction_even_as_a_manager(settings):
    settings.CORRECTION_APPROVAL_THRESHOLD = "1"
    site, sku = stocked(10)
    manager = user_make(role=MANAGERS)
    [correction] = corrections_request(drafts=[draft(site, sku, delta=5)], requested_by=manager)

    with pytest.raises(SelfApprovalRefused):
        correction_approve(correction_id=correction.pk, approved_by=manager)

    assert on_hand(site, sku) == 10
    assert Correction.objects.get().status == CorrectionStatus.PENDING


@pytest.mark.parametrize("role", [STOCK_STAFF, ON_CALL, None])
def test_only_managers_approve(settings, role):
    settings.CORRECTION_APPROVAL_THRESHOLD = "1"
    site, sku = stocked(10)
    [correction] = corrections_request(
        drafts=[draft(site, sku, delta=5)], requested_by=user_make(role=STOCK_STAFF)
    )

    with pytest.raises(CorrectionNotAllowed) as refusal:
        correction_approve(correction_id=correction.pk, approved_by=user_make(role=role))

    assert str(refusal.value) == "you do not have permission to approve corrections"
    assert on_hand(site, sku) == 10


@pytest.mark.parametrize("role", [ON_CALL, None])
def test_users_outside_stock_staff_and_managers_cannot_correct(role):
    site, sku = stocked(10)

    with pytest.raises(CorrectionNotAllowed) as refusal:
        corrections_request(drafts=[draft(site, sku, delta=1)], requested_by=user_make(role=role))

    assert str(refusal.value) == "you do not have permission to correct stock"
    assert not Correction.objects.exists()


def test_a_rejected_correction_changes_nothing_and_cannot_then_be_approved(settings):
    settings.CORRECTION_APPROVAL_THRESHOLD = "1"
    site, sku = stocked(10)
    [correction] = corrections_request(
        drafts=[draft(site, sku, delta=5)], requested_by=user_make(role=STOCK_STAFF)
    )
    manager = user_make(role=MANAGERS)

    correction_reject(correction_id=correction.pk, rejected_by=manager, note="no evidence")

    with pytest.raises(CorrectionNotPending):
        correction_approve(correction_id=correction.pk, approved_by=user_make(role=MANAGERS))
    assert on_hand(site, sku) == 10
    assert Correction.objects.get().decision_note == "no evidence"


def test_a_reversing_correction_restores_stock_and_a_correction_is_reversed_once():
    site, sku = stocked(10)
    staff = user_make(role=STOCK_STAFF)
    [original] = corrections_request(drafts=[draft(site, sku, counted_qty=6)], requested_by=staff)

    reversal = correction_reverse(correction_id=original.pk, requested_by=staff, note="miscount")

    assert on_hand(site, sku) == 10
    assert reversal.reverses == original
    assert reversal.applied_delta == 4
    assert reversal.note.startswith(f"Reverses correction #{original.pk}.")
    with pytest.raises(CorrectionNotReversible):
        correction_reverse(correction_id=original.pk, requested_by=staff)
    assert on_hand(site, sku) == 10
    assert ledger_differences()[1] == []


def test_a_pending_correction_cannot_be_reversed(settings):
    settings.CORRECTION_APPROVAL_THRESHOLD = "1"
    site, sku = stocked(10)
    staff = user_make(role=STOCK_STAFF)
    [pending] = corrections_request(drafts=[draft(site, sku, delta=5)], requested_by=staff)

    with pytest.raises(CorrectionNotReversible):
        correction_reverse(correction_id=pending.pk, requested_by=staff)


def test_the_database_refuses_to_edit_an_applied_correction():
    site, sku = stocked(10)
    [correction] = corrections_request(
        drafts=[draft(site, sku, delta=1)], requested_by=user_make(role=STOCK_STAFF)
    )

    with pytest.raises(DatabaseError), transaction.atomic():
        Correction.objects.filter(pk=correction.pk).update(delta=100)

    assert Correction.objects.get().delta == 1


def test_the_database_refuses_to_delete_an_applied_correction(postgres_only):
    site, sku = stocked(10)
    [correction] = corrections_request(
        drafts=[draft(site, sku, delta=1)], requested_by=user_make(role=STOCK_STAFF)
    )

    with pytest.raises(DatabaseError), transaction.atomic():
        Correction.objects.filter(pk=correction.pk).delete()

    assert Correction.objects.count() == 1


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"counted_qty": 1, "delta": 1}, "not both"),
        ({}, "not both"),
        ({"delta": 0}, "changes nothing"),
        ({"counted_qty": -1}, "cannot be negative"),
        ({"counted_qty": 1_000_000_001}, "at most 1000000000"),
        ({"delta": 9223372036854775807}, "a delta must be -1000000000 to 1000000000"),
        ({"delta": -(10**20)}, "a delta must be -1000000000 to 1000000000"),
        ({"delta": 1, "reason": "stolen"}, "unknown reason"),
    ],
)
def test_bad_drafts_are_refused_with_a_reason_and_nothing_is_written(fields, message):
    site, sku = stocked(10)

    with pytest.raises(InvalidCorrection, match=message):
        corrections_request(
            drafts=[draft(site, sku, **fields)], requested_by=user_make(role=MANAGERS)
        )

    assert not Correction.objects.exists()
    assert on_hand(site, sku) == 10


def test_an_unknown_sku_in_a_bulk_request_writes_nothing():
    site, sku = stocked(10)
    ghost = CorrectionDraft(site=site.code, sku="NOPE", reason="found", delta=1)

    with pytest.raises(UnknownSku):
        corrections_request(
            drafts=[draft(site, sku, delta=1), ghost], requested_by=user_make(role=STOCK_STAFF)
        )

    assert not Correction.objects.exists()
    assert on_hand(site, sku) == 10


def test_a_correction_for_a_level_that_does_not_exist_yet_creates_it():
    site, sku = site_make(), sku_make()

    corrections_request(
        drafts=[draft(site, sku, counted_qty=3, reason="found")],
        requested_by=user_make(role=STOCK_STAFF),
    )

    assert on_hand(site, sku) == 3


def test_applied_corrections_announce_their_site_after_commit(
    django_capture_on_commit_callbacks,
):
    site, sku = stocked(10)
    staff = user_make(role=STOCK_STAFF)

    with django_capture_on_commit_callbacks() as callbacks:
        corrections_request(drafts=[draft(site, sku, delta=1)], requested_by=staff)

    [announce] = callbacks
    assert (announce.func, announce.args) == (notify_now, (stock_changed,))
    assert announce.keywords == {"site_codes": [site.code]}


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_counted_correction_waits_for_a_concurrent_writer_and_counts_from_its_result(
    postgres_only,
):
    site, sku = stocked(10)
    staff = user_make(role=STOCK_STAFF)
    lock_held = threading.Event()

    def concurrent_receipt():
        try:
            with transaction.atomic():
                StockLevel.objects.select_for_update().get(site=site, sku=sku)
                lock_held.set()
                time.sleep(0.5)  # the correction must wait here, not read 10
                movements_record(requests=[receive(site, sku, 5)])
        finally:
            connection.close()

    writer = threading.Thread(target=concurrent_receipt)
    writer.start()
    assert lock_held.wait(20)
    [correction] = corrections_request(
        drafts=[draft(site, sku, counted_qty=12)], requested_by=staff
    )
    writer.join(timeout=20)
    assert not writer.is_alive(), "the concurrent receipt is stuck"

    assert (correction.on_hand_before, correction.applied_delta) == (15, -3)
    assert on_hand(site, sku) == 12
    assert ledger_differences()[1] == []


def test_split_corrections_by_one_requester_add_up_against_the_threshold(settings):
    # given a threshold of 1,000 and a SKU worth 1.00: one correction of -2,952 would wait
    settings.CORRECTION_APPROVAL_THRESHOLD = "1000"
    site, sku = stocked(5000, unit_cost="1.00")
    clerk = user_make(role=STOCK_STAFF)

    # when the same person asks for three corrections of -984 on that stock level instead
    outcomes = [
        corrections_request(drafts=[draft(site, sku, delta=-984)], requested_by=clerk)[0].status
        for _ in range(3)
    ]

    # then only the first applies; the others wait, and stock moved by 984 only
    assert outcomes == [
        CorrectionStatus.APPLIED,
        CorrectionStatus.PENDING,
        CorrectionStatus.PENDING,
    ]
    assert on_hand(site, sku) == 5000 - 984


def test_split_corrections_in_one_bulk_request_add_up_too(settings):
    settings.CORRECTION_APPROVAL_THRESHOLD = "1000"
    site, sku = stocked(5000, unit_cost="1.00")
    clerk = user_make(role=STOCK_STAFF)

    corrections = corrections_request(
        drafts=[draft(site, sku, delta=-600), draft(site, sku, delta=-600)], requested_by=clerk
    )

    assert [c.status for c in corrections] == [CorrectionStatus.APPLIED, CorrectionStatus.PENDING]
    assert on_hand(site, sku) == 4400


def requested_hours_ago(correction, hours: float) -> None:
    """Move a correction back in time (the immutability trigger is lifted for this update)."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")  # no triggers fire
        Correction.objects.filter(pk=correction.pk).update(
            requested_at=F("requested_at") - timedelta(hours=hours)
        )
        cursor.execute("SET LOCAL session_replication_role = origin")


def test_the_rolling_window_is_per_requester_per_level_and_24_hours(settings, postgres_only):
    settings.CORRECTION_APPROVAL_THRESHOLD = "1000"
    site, sku = stocked(5000, unit_cost="1.00")
    other_sku = sku_make(unit_cost="1.00")
    clerk, colleague = user_make(role=STOCK_STAFF), user_make(role=STOCK_STAFF)

    def status_of(user, level_sku, delta):
        [correction] = corrections_request(
            drafts=[draft(site, level_sku, delta=delta)], requested_by=user
        )
        return correction.status

    # given the clerk applied 984 of value on a level 23 hours ago
    [earlier] = corrections_request(drafts=[draft(site, sku, delta=-984)], requested_by=clerk)
    requested_hours_ago(earlier, 23)

    # then a colleague, and the clerk on another SKU, are not held back by it
    assert status_of(colleague, sku, -984) == CorrectionStatus.APPLIED
    assert status_of(clerk, other_sku, 984) == CorrectionStatus.APPLIED
    # but the clerk's next 20 on the same level waits (984 + 20 > 1,000)
    assert status_of(clerk, sku, -20) == CorrectionStatus.PENDING

    # and once the earlier one is more than 24 hours old, the same 20 applies
    requested_hours_ago(earlier, 1.01)
    assert status_of(clerk, sku, -20) == CorrectionStatus.APPLIED


def test_an_approved_correction_does_not_count_against_the_next_ones(settings):
    settings.CORRECTION_APPROVAL_THRESHOLD = "1000"
    site, sku = stocked(5000, unit_cost="1.00")
    clerk = user_make(role=STOCK_STAFF)
    [large] = corrections_request(drafts=[draft(site, sku, delta=-2000)], requested_by=clerk)
    correction_approve(correction_id=large.pk, approved_by=user_make(role=MANAGERS))

    [small] = corrections_request(drafts=[draft(site, sku, delta=-10)], requested_by=clerk)

    # a manager has seen the large one: only unapproved changes add up
    assert small.status == CorrectionStatus.APPLIED
    assert on_hand(site, sku) == 2990
