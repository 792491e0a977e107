"""What people see, in headless Chromium against a real Daphne, Redis, RQ worker and database."""

import time
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from core.notify import notify_now, stock_changed
from core.roles import MANAGERS, STOCK_STAFF
from corrections.services import CorrectionDraft, corrections_request
from ledger.models import MovementKind, Site
from ledger.services import MovementRequest, movements_record
from oncall.models import Alert, AlertKind, AlertRule
from tests.browser.conftest import (  # noqa: F401 (fixtures)
    chromium,
    in_thread,
    live_state_wait,
    log_in,
    no_reload,
)
from tests.builders import receive, site_make, sku_make, user_make
from tests.processes import daphne_server, rq_worker
from tests.redis_db import redis_test_db_flush

# serialized_rollback: the role groups come from data migrations, and a transactional test
# flushes them for the tests after it.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

PASSWORD = "pw-for-tests"
ON_HAND = '[data-stock-on-hand="ams/TEA"]'


def browser_page(chromium):  # noqa: F811
    """A separate browser context: its own cookies, as a second person's browser."""
    return chromium.new_context(viewport={"width": 1366, "height": 768}).new_page()


def people_and_stock():
    site, sku = site_make("ams"), sku_make("TEA", unit_cost="2.00")
    movements_record(requests=[receive(site, sku, 5)])
    user_make("boss", role=MANAGERS, is_staff=True)
    user_make("clerk", role=STOCK_STAFF, is_staff=True)


def test_a_correction_in_the_admin_shows_on_a_managers_dashboard_without_reload(chromium):  # noqa: F811
    in_thread(people_and_stock)
    manager, clerk = browser_page(chromium), browser_page(chromium)

    with daphne_server() as daphne:
        log_in(manager, daphne.base_url, username="boss", password=PASSWORD)
        manager.goto(f"{daphne.base_url}/sites/ams/")
        live_state_wait(manager, "live")
        assert manager.text_content(ON_HAND) == "5"

        with no_reload(manager):
            log_in(clerk, daphne.base_url, username="clerk", password=PASSWORD)
            clerk.goto(f"{daphne.base_url}/admin/corrections/correction/add/")
            clerk.select_option("select[name=site]", "ams")
            clerk.fill("input[name=sku]", "TEA")
            clerk.fill("input[name=counted_qty]", "9")
            clerk.select_option("select[name=reason]", "recount")
            clerk.fill("textarea[name=note]", "shelf recount")
            clerk.click("input[name=_preview]")
            assert clerk.text_content('[data-preview="after"]') == "9"
            assert manager.text_content(ON_HAND) == "5"  # a preview changes nothing
            started = time.monotonic()
            clerk.click("input[name=_apply]")
            clerk.wait_for_selector("text=5 → 9")

            manager.wait_for_function(
                "selector => document.querySelector(selector).textContent === '9'",
                arg=ON_HAND,
                timeout=5000,
            )
            elapsed = time.monotonic() - started

    assert elapsed < 5


def stock_oversold_and_announced():
    """A feed dispatches 8 TEA at ams, which holds 5: on hand -3 (as an ingest worker writes)."""
    movements_record(
        requests=[
            MovementRequest(
                site="ams",
                sku="TEA",
                kind=MovementKind.ORDER_DISPATCHED,
                on_hand_delta=-8,
                occurred_at=timezone.now(),
            )
        ]
    )
    notify_now(stock_changed, site_codes=["ams"])  # as the ingest worker does after its commit


def stock_recounted():
    corrections_request(
        drafts=[CorrectionDraft(site="ams", sku="TEA", reason="recount", counted_qty=0)],
        requested_by=get_user_model().objects.get(username="clerk"),
    )


def test_an_alert_opens_on_a_kpi_shows_on_the_dashboard_live_and_goes_when_it_recovers(
    chromium,  # noqa: F811
):
    def given():
        redis_test_db_flush()
        people_and_stock()
        AlertRule.objects.create(
            name="Negative stock at ams",
            kind=AlertKind.NEGATIVE_STOCK,
            site=Site.objects.get(code="ams"),
            threshold=Decimal(0),
        )

    in_thread(given)
    manager = browser_page(chromium)

    with daphne_server() as daphne, rq_worker("ingest", "default"):
        log_in(manager, daphne.base_url, username="boss", password=PASSWORD)
        manager.goto(f"{daphne.base_url}/sites/ams/")
        live_state_wait(manager, "live")
        assert manager.get_attribute("#alerts", "data-open-alerts") == "0"

        with no_reload(manager):
            in_thread(stock_oversold_and_announced)
            manager.wait_for_selector('#alerts [data-alert-kind="negative_stock"]', timeout=15000)
            assert "Negative stock at ams" in manager.text_content("#alerts")

            in_thread(stock_recounted)  # the correction announces itself after commit
            manager.wait_for_selector("#alerts [data-alerts-placeholder]", timeout=15000)

    def alert_history():
        alert = Alert.objects.get()
        return alert.status, [t.to_status for t in alert.transitions.all()]

    assert in_thread(alert_history) == ("resolved", ["open", "resolved"])
