"""The courier scorecard in Chromium against a real Daphne, Redis and database: it sorts by a
click on a column, updates itself when deliveries arrive, and fits a phone."""

import datetime as dt

import pytest
from django.utils import timezone

from dashboards.broadcasts import scopes_changed_announce
from tests.browser.conftest import in_thread, live_state_wait, log_in, no_reload
from tests.builders import site_make, user_make
from tests.dashboards.kpi_helpers import deliver
from tests.processes import daphne_server

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "pw-for-tests"
MINUTE = dt.timedelta(minutes=1)
COURIERS_SHOWN = (
    "() => [...document.querySelectorAll('tr[data-courier]')].map(row => row.dataset.courier)"
)

SCORECARD_ON_A_PHONE = """() => {
  const table = document.querySelector('.scorecard-table');
  const cells = [...table.querySelectorAll('tbody th, tbody td')];
  return {scrollWidth: table.scrollWidth, clientWidth: table.clientWidth, cells: cells.length,
          off_screen: cells.filter(cell => cell.getBoundingClientRect().right > 390
            || cell.getBoundingClientRect().left < 0).map(cell => cell.textContent),
          labels: cells.filter(cell => cell.dataset.label).map(cell => cell.dataset.label)};
}"""


@pytest.fixture
def couriers():
    """At ams: bike-7 two deliveries (4.00, 6.00), van-2 one (12.00), cargo-1 one (3.00)."""

    def build():
        user_make("boss")
        site = site_make("ams")
        now = timezone.now()
        for courier, cost, minutes_ago in [
            ("bike-7", "4.00", 5),
            ("bike-7", "6.00", 6),
            ("van-2", "12.00", 7),
            ("cargo-1", "3.00", 8),
        ]:
            deliver(site, now - minutes_ago * MINUTE, courier=courier, cost=cost)
        return site

    return in_thread(build)


def scorecard_open(page, base_url: str) -> None:
    log_in(page, base_url, username="boss", password=PASSWORD)
    page.click("text=Couriers")
    page.wait_for_selector("tr[data-courier]")
    live_state_wait(page, "live")


def order_wait(page, expected: list[str]) -> None:
    page.wait_for_function(
        f"expected => JSON.stringify(({COURIERS_SHOWN})()) === JSON.stringify(expected)",
        arg=expected,
        timeout=5000,
    )


def test_the_scorecard_sorts_by_a_click_on_a_column(page, couriers):
    with daphne_server() as daphne:
        scorecard_open(page, daphne.base_url)
        assert page.evaluate(COURIERS_SHOWN) == ["bike-7", "cargo-1", "van-2"]

        with no_reload(page):
            page.click("th[data-column=cost_per_shipment] a")
            order_wait(page, ["van-2", "bike-7", "cargo-1"])
            assert page.get_attribute("th[data-column=cost_per_shipment]", "aria-sort") == (
                "descending"
            )
            page.click("th[data-column=cost_per_shipment] a")
            order_wait(page, ["cargo-1", "bike-7", "van-2"])
            page.click("th[data-column=key] a")
            order_wait(page, ["bike-7", "cargo-1", "van-2"])

        # the address says the sorting: a reload or a shared link shows the same
        assert "sort=key&dir=asc" in page.url


def test_the_scorecard_updates_live_when_deliveries_arrive(page, couriers):
    def deliveries_arrive():
        now = timezone.now()
        for minutes_ago in (1, 2, 3):
            deliver(couriers, now - minutes_ago * MINUTE, courier="drone-1", cost="1.00")
        scopes_changed_announce(site_codes=["ams"])

    with daphne_server() as daphne:
        scorecard_open(page, daphne.base_url)
        with no_reload(page):
            in_thread(deliveries_arrive)
            # drone-1 now has the most deliveries: first, in the default order
            order_wait(page, ["drone-1", "bike-7", "cargo-1", "van-2"])
        cell = 'tr[data-courier="drone-1"] [data-field="deliveries"]'
        assert page.text_content(cell) == "3"


def test_the_scorecard_fits_a_phone(chromium, couriers):
    context = chromium.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    try:
        with daphne_server() as daphne:
            log_in(page, daphne.base_url, username="boss", password=PASSWORD)
            page.goto(f"{daphne.base_url}/couriers/?window=24h")
            page.wait_for_selector("tr[data-courier]")
            # the page never scrolls sideways, nor does the table inside itself: one card per
            # courier, every figure on screen
            assert page.evaluate("document.documentElement.scrollWidth") <= 390
            table = page.evaluate(SCORECARD_ON_A_PHONE)
            assert table["scrollWidth"] <= table["clientWidth"], table
            assert table["cells"] == 3 * 6 and table["off_screen"] == [], table
            assert table["labels"][:5] == [
                "Deliveries", "Order accuracy", "Cost per shipment", "Fulfillment p50",
                "Fulfillment p90",
            ]  # fmt: skip
            page.click("th[data-column=deliveries] a")
            order_wait(page, ["cargo-1", "van-2", "bike-7"])
    finally:
        context.close()
