"""The dashboard's time control: a manager picks an earlier instant (in the browser's own time
zone, far from UTC), sees every table as it stood then, marked not live, and returns to live.
Headless Chromium against a real Daphne, Redis and database."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from ledger.services import movements_record
from tests.browser.conftest import in_thread, live_state_wait, log_in
from tests.builders import receive, site_make, sku_make, user_make
from tests.processes import daphne_server

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

VIEWER_ZONE = "America/Los_Angeles"


@pytest.fixture
def history():
    """Site ams: 5 TEA received two hours ago, 3 more ten minutes ago."""

    def build():
        site, sku = site_make("ams"), sku_make("TEA")
        user_make("boss")
        now = timezone.now()
        movements_record(
            requests=[
                receive(site, sku, 5, occurred_at=now - dt.timedelta(hours=2)),
                receive(site, sku, 3, occurred_at=now - dt.timedelta(minutes=10)),
            ]
        )
        return now

    return in_thread(build)


def test_the_time_control_shows_an_earlier_state_and_returns_to_live(chromium, history):
    page = chromium.new_context(
        viewport={"width": 1366, "height": 768}, timezone_id=VIEWER_ZONE
    ).new_page()
    on_hand = '[data-stock-on-hand="ams/TEA"]'
    one_hour_ago = (history - dt.timedelta(hours=1)).astimezone(ZoneInfo(VIEWER_ZONE))
    with daphne_server() as daphne:
        log_in(page, daphne.base_url, username="boss", password="pw-for-tests")
        page.goto(f"{daphne.base_url}/sites/ams/")
        live_state_wait(page, "live")
        assert page.text_content(on_hand) == "8"
        # instants are shown in the viewer's time zone, and the chart says so
        page.wait_for_selector("#chart-cost-per-shipment .g-xtitle")
        assert page.text_content("#chart-cost-per-shipment .g-xtitle") == "Time (your time, PST)"

        # the manager picks an hour ago, in their own (Los Angeles) time
        page.fill("#as-of-local", one_hour_ago.strftime("%Y-%m-%dT%H:%M:%S"))
        page.click("#time-travel button[type=submit]")
        page.wait_for_selector("#live-root[data-frozen-at]")

        assert page.text_content(on_hand) == "5"
        assert "(not live)" in page.text_content("#as-of")
        assert "Not live" in page.text_content("#live-badge")
        frozen_at = dt.datetime.fromisoformat(page.get_attribute("#live-root", "data-frozen-at"))
        assert frozen_at == one_hour_ago.replace(microsecond=0)
        # the link is shareable: it carries the instant with the viewer's offset
        assert "as_of=" in page.url
        assert "-08%3A00" in page.url or "-08:00" in page.url
        # the data stays frozen: no socket, nothing live
        assert page.get_attribute("#live-root", "data-live-state") == "stale"

        page.click("#back-to-live")
        live_state_wait(page, "live")
        assert page.text_content(on_hand) == "8"
        assert "as_of" not in page.url
