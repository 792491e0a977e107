"""What people see, in headless Chromium against a real Daphne, Redis, RQ worker and database."""

import time
from decimal import Decimal

import django_rq
import pytest
from rq.registry import FailedJobRegistry

from dashboards.oncall.alerts import alerts_evaluation_request
from dashboards.oncall.models import AlertKind, AlertRule
from inventory_ops.roles import MANAGERS, STOCK_STAFF
from inventory_ops.services import movements_record
from tests.browser.conftest import (  # noqa: F401 (fixtures)
    chromium,
    in_thread,
    live_state_wait,
    log_in,
    no_reload,
)
from tests.builders import receive, site_make, sku_make, user_make
from tests.processes import daphne_server, rq_worker

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


def failed_job_make():
    queue = django_rq.get_queue("ingest", commit_mode="auto")
    queue.enqueue("tests.oncall.test_console.explode")
    deadline = time.monotonic() + 20
    while FailedJobRegistry(queue=queue).count == 0:
        assert time.monotonic() < deadline, "the failing job never failed"
        time.sleep(0.2)


def failed_jobs_clear():
    registry = FailedJobRegistry(queue=django_rq.get_queue("ingest"))
    for job_id in registry.get_job_ids():
        registry.remove(job_id, delete_job=True)


def test_an_alert_appears_on_the_dashboard_live_and_goes_when_it_recovers(chromium):  # noqa: F811
    def given():
        django_rq.get_connection("default").flushdb()
        user_make("boss", role=MANAGERS)
        site_make("ams")
        AlertRule.objects.create(
            name="Failed jobs", kind=AlertKind.FAILED_JOBS, threshold=Decimal(0)
        )

    in_thread(given)
    manager = browser_page(chromium)

    with daphne_server() as daphne, rq_worker("ingest", "default"):
        log_in(manager, daphne.base_url, username="boss", password=PASSWORD)
        manager.goto(f"{daphne.base_url}/sites/ams/")
        live_state_wait(manager, "live")
        assert manager.get_attribute("#alerts", "data-open-alerts") == "0"

        with no_reload(manager):
            in_thread(failed_job_make)
            in_thread(alerts_evaluation_request, site_codes=["ams"])
            manager.wait_for_selector('#alerts [data-alert-kind="failed_jobs"]', timeout=15000)
            assert "Failed jobs" in manager.text_content("#alerts")

            in_thread(failed_jobs_clear)
            in_thread(alerts_evaluation_request, site_codes=["ams"])
            manager.wait_for_selector("#alerts [data-alerts-placeholder]", timeout=15000)
