"""What a warehouse manager sees: the dashboard updates itself, says whether it is live, and
recovers by itself. Headless Chromium against a real Daphne, Redis and database."""

import json
import re
import time
import urllib.error
import urllib.request

import pytest
from django.utils import timezone

from dashboards.broadcasts import scopes_changed_announce
from ingest.sources import feed_source_create
from ledger.services import movements_record
from tests.browser.conftest import in_thread, live_state_wait, log_in, no_reload
from tests.builders import receive, site_make, sku_make, user_make
from tests.processes import daphne_server, rq_worker

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "pw-for-tests"


@pytest.fixture
def manager():
    return in_thread(user_make, "boss")


@pytest.fixture
def stocked_site():
    """Site ams holding 5 TEA."""

    def build():
        site, sku = site_make("ams"), sku_make("TEA")
        movements_record(requests=[receive(site, sku, 5)])
        return site, sku

    return in_thread(build)


def stock_receive_and_announce(site, sku, qty: int) -> None:
    movements_record(requests=[receive(site, sku, qty)])
    scopes_changed_announce(site_codes=[site.code])


def dashboard_open(page, base_url: str, path: str) -> None:
    """Log in as the manager and open a dashboard until it is live."""
    log_in(page, base_url, username="boss", password=PASSWORD)
    page.goto(f"{base_url}{path}")
    live_state_wait(page, "live")


def cell_text_wait(page, selector: str, text: str, timeout_ms: float) -> None:
    page.wait_for_function(
        "([selector, text]) => (document.querySelector(selector) || {}).textContent === text",
        arg=[selector, text],
        timeout=timeout_ms,
    )


def test_a_change_announced_by_a_writer_shows_without_reload_within_2s(page, manager, stocked_site):
    with daphne_server() as daphne:
        dashboard_open(page, daphne.base_url, "/sites/ams/")
        on_hand = '[data-stock-on-hand="ams/TEA"]'
        assert page.text_content(on_hand) == "5"

        with no_reload(page):
            started = time.monotonic()
            in_thread(stock_receive_and_announce, *stocked_site, 3)
            cell_text_wait(page, on_hand, "8", timeout_ms=2000)
            elapsed = time.monotonic() - started

    assert elapsed < 2


def test_events_posted_through_the_ingest_api_change_a_kpi_tile_within_2s(page, manager):
    # given site ams with TEA at zero and a feed source
    in_thread(lambda: (site_make("ams"), sku_make("TEA")))
    token = in_thread(lambda: feed_source_create(name="browser-test-wms").token)

    def ingest(events: list[dict]) -> int:
        request = urllib.request.Request(  # noqa: S310 (local test server)
            f"{daphne.base_url}/api/ingest/events",
            data=json.dumps({"events": events}).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    with daphne_server() as daphne, rq_worker():
        dashboard_open(page, daphne.base_url, "/sites/ams/")
        tile = '[data-kpi="negative_stock"]'
        assert page.text_content(tile) == "0"

        # when a feed reports 5 TEA lost at ams (on hand 0 -> -5)
        with no_reload(page):
            started = time.monotonic()
            status = ingest(
                [
                    {
                        "event_id": "adj-1",
                        "type": "stock.adjusted",
                        "occurred_at": timezone.now().isoformat(),
                        "site": "ams",
                        "sku": "TEA",
                        "qty_delta": -5,
                        "reason": "damaged",
                    }
                ]
            )
            assert status == 202
            # then the negative-stock tile counts it, without a reload, within 2 s
            cell_text_wait(page, tile, "1", timeout_ms=2000)
            elapsed = time.monotonic() - started

    assert elapsed < 2


def test_after_the_web_process_restarts_the_page_reconnects_and_resyncs(
    page, manager, stocked_site
):
    with daphne_server() as daphne:
        port = daphne.base_url.rsplit(":", 1)[1]
        base_url = daphne.base_url
        dashboard_open(page, base_url, "/sites/ams/")
        page.evaluate("window.__sameDocument = true")

    # the web process is gone: the page says so
    live_state_wait(page, "reconnecting", timeout_ms=5000)
    assert page.text_content("#live-badge").startswith("Reconnecting")
    # stock changes while no web process could tell anyone (the announcement is lost)
    in_thread(stock_receive_and_announce, *stocked_site, 4)

    with daphne_server(int(port)):
        # it comes back by itself, and shows the numbers as they are now
        live_state_wait(page, "live", timeout_ms=20_000)
        assert page.text_content('[data-stock-on-hand="ams/TEA"]') == "9"
    assert page.evaluate("window.__sameDocument === true"), "the page reloaded"


def test_the_window_selector_changes_the_window_without_a_reload(page, manager, stocked_site):
    with daphne_server() as daphne:
        dashboard_open(page, daphne.base_url, "/sites/ams/")

        with no_reload(page):
            page.click('[data-window-choice="7d"]')
            page.wait_for_url(re.compile(r"window=7d"))
            live_state_wait(page, "live")
            ws_path = page.get_attribute("#dashboard", "data-ws-path")
            current = page.get_attribute('[data-window-choice="7d"]', "aria-current")
            # and the new socket still gets live updates for the new window
            in_thread(stock_receive_and_announce, *stocked_site, 1)
            cell_text_wait(page, '[data-stock-on-hand="ams/TEA"]', "6", timeout_ms=2000)

        # and Back returns to the previous window, live again
        page.go_back()
        page.wait_for_url(re.compile(r"/sites/ams/$"))
        live_state_wait(page, "live")
        ws_path_after_back = page.get_attribute("#dashboard", "data-ws-path")

    assert ws_path == "/ws/dashboard/?site=ams&window=7d"
    assert current == "true"
    assert ws_path_after_back == "/ws/dashboard/?site=ams&window=1h"


@pytest.mark.parametrize(("width", "height"), [(1366, 768), (1920, 1080)])
def test_the_layout_fits_a_laptop_and_a_1080p_screen(page, manager, stocked_site, width, height):
    with daphne_server() as daphne:
        page.set_viewport_size({"width": width, "height": height})
        dashboard_open(page, daphne.base_url, "/")
        page.wait_for_selector("#chart-worst-stockouts .main-svg")
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        tiles_visible = page.evaluate(
            "[...document.querySelectorAll('[data-kpi]')]"
            ".every(e => e.scrollWidth <= e.clientWidth)"
        )

    assert overflow == 0  # no sideways scrolling
    assert tiles_visible  # no tile value cut off


def test_kiosk_mode_is_readable_from_afar_and_needs_nothing_from_the_internet(page, manager):
    in_thread(site_make, "ams")
    requested = []
    page.on("request", lambda request: requested.append(request.url))
    with daphne_server() as daphne:
        log_in(page, daphne.base_url, username="boss", password=PASSWORD)
        page.set_viewport_size({"width": 1920, "height": 1080})
        page.goto(f"{daphne.base_url}/?kiosk=1")
        live_state_wait(page, "live")
        page.wait_for_selector("#chart-orders-per-minute .main-svg")
        value_size = page.eval_on_selector(
            '[data-kpi="deliveries"]', "e => parseFloat(getComputedStyle(e).fontSize)"
        )
        has_nav = page.query_selector("header.topbar") is not None
        base_url = daphne.base_url

    assert value_size >= 48  # px: readable from three metres on a 1080p TV
    assert not has_nav
    outside = [url for url in requested if not url.startswith((base_url, "ws://127.0.0.1"))]
    assert outside == []


def test_the_tiles_go_live_before_plotly_js_runs_and_the_charts_draw_after(
    page, manager, stocked_site
):
    # given plotly.js held back on its way to the browser
    held, released = [], []

    def hold(route) -> None:
        if released:
            route.continue_()
        else:
            held.append(route)

    page.route("**/plotly-basic.min*.js", hold)

    with daphne_server() as daphne:
        # when the manager opens the dashboard
        dashboard_open(page, daphne.base_url, "/sites/ams/")

        # then the tiles are live with their numbers while plotly.js has not run
        assert page.evaluate("() => typeof window.Plotly") == "undefined"
        assert page.text_content('[data-kpi="negative_stock"]') == "0"
        assert page.locator(".js-plotly-plot").count() == 0

        # and once plotly.js arrives the charts draw
        assert held  # the page did ask for it
        released.append(True)
        for route in held:
            route.continue_()
        page.wait_for_selector("#chart-orders-per-minute .main-svg", timeout=30_000)
