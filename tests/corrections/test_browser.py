"""Deciding and reversing corrections from their admin page, in headless Chromium against Daphne.

The buttons must post their own forms: a form nested in the admin's change form is dropped by
the browser, and its button then posted the change form (403).
"""

import pytest

from core.roles import MANAGERS, STOCK_STAFF
from corrections.models import Correction, CorrectionStatus
from corrections.services import CorrectionDraft, corrections_request
from ledger.models import StockLevel
from ledger.services import movements_record
from tests.browser.conftest import chromium, in_thread, log_in  # noqa: F401 (fixtures)
from tests.builders import receive, site_make, sku_make, user_make
from tests.processes import daphne_server

# serialized_rollback: the role groups come from data migrations, and a transactional test
# flushes them for the tests after it.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

PASSWORD = "pw-for-tests"


def people_and_corrections() -> dict[str, int]:
    """ams holds 1,000 TEA at 2.00; the clerk asked for a large, a second large and a small one."""
    site, sku = site_make("ams"), sku_make("TEA", unit_cost="2.00")
    movements_record(requests=[receive(site, sku, 1000)])
    user_make("boss", role=MANAGERS, is_staff=True)
    clerk = user_make("clerk", role=STOCK_STAFF, is_staff=True)
    small, large, doubtful = corrections_request(
        drafts=[
            CorrectionDraft(site="ams", sku="TEA", reason="found", delta=3),
            CorrectionDraft(site="ams", sku="TEA", reason="lost", delta=-600),
            CorrectionDraft(site="ams", sku="TEA", reason="damaged", delta=-700),
        ],
        requested_by=clerk,
    )
    return {"small": small.pk, "large": large.pk, "doubtful": doubtful.pk}


def correction(pk: int) -> Correction:
    return Correction.objects.select_related("decided_by").get(pk=pk)


def on_hand() -> int:
    return StockLevel.objects.get(site__code="ams", sku__code="TEA").on_hand


def browser_page(chromium):  # noqa: F811
    return chromium.new_context(viewport={"width": 1366, "height": 768}).new_page()


def change_page(base_url: str, pk: int) -> str:
    return f"{base_url}/admin/corrections/correction/{pk}/change/"


def test_a_manager_approves_and_rejects_from_the_page_and_stock_staff_reverse(chromium):  # noqa: F811
    ids = in_thread(people_and_corrections)
    assert in_thread(on_hand) == 1003  # the small one applied; the two large ones wait
    manager, clerk = browser_page(chromium), browser_page(chromium)

    with daphne_server() as daphne:
        # a manager approves the large one from its page, with a note
        log_in(manager, daphne.base_url, username="boss", password=PASSWORD)
        manager.goto(change_page(daphne.base_url, ids["large"]))
        manager.fill("#correction-decision textarea[name=note]", "shelf photos checked")
        manager.click("text=Approve and apply")
        manager.wait_for_selector(f"text=Correction #{ids['large']} approved and applied.")

        # and rejects the other with a note
        manager.goto(change_page(daphne.base_url, ids["doubtful"]))
        manager.fill("#correction-decision textarea[name=note]", "no damage report")
        manager.click("#correction-decision input[value=Reject]")
        manager.wait_for_selector(f"text=Correction #{ids['doubtful']} rejected")

        # stock staff reverse the small one from its page
        log_in(clerk, daphne.base_url, username="clerk", password=PASSWORD)
        clerk.goto(change_page(daphne.base_url, ids["small"]))
        clerk.fill("#correction-reverse textarea[name=note]", "double counted")
        clerk.click("text=Reverse this correction (+3)")
        clerk.wait_for_selector("text=Reversing correction")

    large, doubtful = in_thread(correction, ids["large"]), in_thread(correction, ids["doubtful"])
    assert (large.status, large.decided_by.username, large.decision_note) == (
        CorrectionStatus.APPLIED,
        "boss",
        "shelf photos checked",
    )
    assert (doubtful.status, doubtful.decision_note) == (
        CorrectionStatus.REJECTED,
        "no damage report",
    )
    reversal = in_thread(lambda: Correction.objects.get(reverses_id=ids["small"]))
    assert (reversal.status, reversal.applied_delta) == (CorrectionStatus.APPLIED, -3)
    assert "double counted" in reversal.note
    assert in_thread(on_hand) == 1000 - 600
