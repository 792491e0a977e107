"""Deciding pending corrections: who may reject, and the list action that approves many."""

import pytest
from django.urls import reverse

from core.roles import MANAGERS, ON_CALL, STOCK_STAFF
from corrections.exceptions import CorrectionNotAllowed
from corrections.models import Correction, CorrectionStatus
from corrections.services import (
    CorrectionDraft,
    correction_reject,
    corrections_request,
)
from ledger.models import StockLevel
from ledger.services import movements_record
from tests.builders import receive, site_make, sku_make, user_make

pytestmark = pytest.mark.django_db

LIST_URL = "/admin/corrections/correction/"


@pytest.fixture
def pending(settings) -> list[Correction]:
    """Two corrections over the approval threshold, requested by stock staff, pending."""
    settings.CORRECTION_APPROVAL_THRESHOLD = "10"
    site, first, second = site_make(), sku_make(unit_cost="5.00"), sku_make(unit_cost="5.00")
    movements_record(requests=[receive(site, first, 10), receive(site, second, 10)])
    corrections = corrections_request(
        drafts=[
            CorrectionDraft(site=site.code, sku=first.code, reason="lost", delta=-4),
            CorrectionDraft(site=site.code, sku=second.code, reason="found", delta=6),
        ],
        requested_by=user_make(role=STOCK_STAFF),
    )
    assert {c.status for c in corrections} == {CorrectionStatus.PENDING}
    return corrections


def on_hand() -> list[int]:
    return list(StockLevel.objects.order_by("sku__code").values_list("on_hand", flat=True))


def statuses() -> list[str]:
    return list(Correction.objects.order_by("pk").values_list("status", flat=True))


def logged_in(client, role):
    user = user_make(role=role, is_staff=True)
    client.force_login(user)
    return user


@pytest.mark.parametrize("role", [STOCK_STAFF, ON_CALL])
def test_only_managers_may_reject_a_correction(pending, role):
    # when someone who may not approve tries to reject one
    with pytest.raises(CorrectionNotAllowed) as refusal:
        correction_reject(
            correction_id=pending[0].pk, rejected_by=user_make(role=role), note="not needed"
        )

    # then they are told why, and it stays pending
    assert str(refusal.value) == "you do not have permission to reject corrections"
    assert statuses() == [CorrectionStatus.PENDING] * 2


@pytest.mark.parametrize(("role", "status"), [(STOCK_STAFF, 403), (ON_CALL, 403)])
def test_the_reject_button_is_refused_to_those_who_may_not_approve(client, pending, role, status):
    logged_in(client, role)

    response = client.post(
        reverse("admin:corrections_correction_reject", args=[pending[0].pk]), {"note": "no"}
    )

    assert response.status_code == status
    assert statuses() == [CorrectionStatus.PENDING] * 2


def test_a_manager_rejects_a_correction_and_stock_is_unchanged(client, pending):
    manager = logged_in(client, MANAGERS)

    response = client.post(
        reverse("admin:corrections_correction_reject", args=[pending[0].pk]),
        {"note": "the shelf was checked"},
        follow=True,
    )

    assert "rejected; stock is unchanged" in response.text
    rejected = Correction.objects.get(pk=pending[0].pk)
    assert (rejected.status, rejected.decided_by) == (CorrectionStatus.REJECTED, manager)
    assert rejected.decision_note == "the shelf was checked"
    assert on_hand() == [10, 10]


def test_a_manager_approves_the_selected_corrections_from_the_list(client, pending):
    # given a manager on the corrections list
    logged_in(client, MANAGERS)

    # when they select both pending corrections and run "Approve the selected corrections"
    response = client.post(
        LIST_URL,
        {"action": "approve_selected", "_selected_action": [c.pk for c in pending]},
        follow=True,
    )

    # then both are applied, the stock moved, and the page says so
    assert statuses() == [CorrectionStatus.APPLIED] * 2
    assert on_hand() == [6, 16]
    assert "2 correction(s) approved and applied." in response.text


def test_stock_staff_cannot_run_the_approve_action(client, pending):
    logged_in(client, STOCK_STAFF)

    client.post(LIST_URL, {"action": "approve_selected", "_selected_action": [pending[0].pk]})

    assert statuses() == [CorrectionStatus.PENDING] * 2
    assert on_hand() == [10, 10]
