"""Every page works under the Content-Security-Policy: Chromium reports no violation, and the
charts (plotly.js, which styles through the CSSOM) still draw. Real Daphne, Redis, database."""

import pytest

from ledger.services import movements_record
from tests.browser.conftest import chromium, in_thread, live_state_wait, log_in  # noqa: F401
from tests.builders import receive, site_make, sku_make, user_make
from tests.processes import daphne_server

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "pw-for-tests"

# Recorded before any page script runs (an init script is not subject to the page's CSP).
VIOLATIONS_RECORD = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(
    `${event.violatedDirective} blocked ${event.blockedURI || "inline"} at ` +
    `${event.sourceFile}:${event.lineNumber} (${event.sample})`
  );
});
"""

PAGES_WITHOUT_CHARTS = [
    "/oncall/",
    "/oncall/runbooks/",
    "/admin/",
    "/admin/ingest/feedsource/",
    "/admin/ingest/feedsource/add/",
    "/admin/corrections/correction/add/",
    "/admin/auth/user/",
    "/skus/TEA/?site=ams",
    "/couriers/?window=24h",
    "/api/docs",
    "/no-such-page/",
]


def stocked_site_and_admin():
    site, sku = site_make("ams"), sku_make("TEA")
    movements_record(requests=[receive(site, sku, 5)])
    user_make("root", is_staff=True, is_superuser=True)


def violations_after_visit(page, url: str) -> list[str]:
    page.goto(url)
    page.wait_for_load_state("networkidle")
    return page.evaluate("window.__cspViolations")


@pytest.fixture
def csp_page(chromium):  # noqa: F811
    context = chromium.new_context(viewport={"width": 1366, "height": 768})
    context.add_init_script(VIOLATIONS_RECORD)
    page = context.new_page()
    console_violations = []
    page.on(
        "console",
        lambda message: (
            console_violations.append(message.text)
            if "Content Security Policy" in message.text
            else None
        ),
    )
    page.console_violations = console_violations
    yield page
    context.close()


def test_dashboard_and_kiosk_draw_their_charts_with_no_csp_violation(csp_page):
    # Given a site with stock and a user who may see everything
    in_thread(stocked_site_and_admin)

    with daphne_server() as daphne:
        log_in(csp_page, daphne.base_url, username="root", password=PASSWORD)
        for path in ("/", "/?kiosk=1", "/sites/ams/?window=24h"):
            # When the dashboard opens and goes live
            csp_page.goto(f"{daphne.base_url}{path}")
            live_state_wait(csp_page, "live", timeout_ms=20_000)

            # Then every chart is drawn, Plotly's own styles applied, and nothing was refused
            charts = csp_page.locator("[data-chart]")
            assert charts.count() > 0
            for index in range(charts.count()):
                assert charts.nth(index).locator("svg.main-svg").count() > 0, path
            # plotly.js's stylesheet (filled through the CSSOM) is in force: the modebar is
            # positioned absolutely by it.
            position = csp_page.evaluate(
                "getComputedStyle(document.querySelector('.modebar-container') "
                "|| document.querySelector('.modebar')).position"
            )
            assert position == "absolute", path
            assert csp_page.evaluate("window.__cspViolations") == [], path
        assert csp_page.console_violations == []


def test_admin_oncall_and_other_pages_have_no_csp_violation(csp_page):
    in_thread(stocked_site_and_admin)

    with daphne_server() as daphne:
        log_in(csp_page, daphne.base_url, username="root", password=PASSWORD)
        reported = {
            path: violations_after_visit(csp_page, f"{daphne.base_url}{path}")
            for path in PAGES_WITHOUT_CHARTS
        }

    assert {path: found for path, found in reported.items() if found} == {}
    assert csp_page.console_violations == []
