"""The tiles' sparklines as the floor sees them: on the TV (1920x1080, one screen, no scrolling)
and on a phone (390 px), redrawn by the live update when a late event changes a past minute."""

import datetime as dt

import pytest

from dashboards.broadcasts import scopes_changed_announce
from tests.browser.conftest import in_thread, live_state_wait, log_in, no_reload
from tests.builders import site_make, sku_make, user_make
from tests.dashboards.kpi_helpers import count, deliver, now_mid_minute, receive, record
from tests.processes import daphne_server

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "pw-for-tests"
SPARKS = """() => [...document.querySelectorAll('[data-sparkline]')].map(spark => {
  const box = spark.querySelector('svg').getBoundingClientRect();
  const tile = spark.closest('.tile').getBoundingClientRect();
  return {key: spark.dataset.sparkline, width: box.width, height: box.height,
          inside: box.left >= tile.left && box.right <= tile.right && box.bottom <= tile.bottom,
          points: spark.querySelector('polyline').getAttribute('points')};
})"""
FITS = """() => document.documentElement.scrollHeight <= innerHeight
  && document.documentElement.scrollWidth <= innerWidth"""


def a_busy_hour():
    user_make("boss", role="managers")
    site, sku = site_make("ams"), sku_make("TEA", unit_cost="1999.99")
    now = now_mid_minute()
    receive(site, sku, 5000, now - dt.timedelta(minutes=59))
    for minutes_ago in range(50, 2, -4):
        deliver(site, now - dt.timedelta(minutes=minutes_ago), accurate=minutes_ago % 3 != 0)
        record(count(site, sku, now - dt.timedelta(minutes=minutes_ago), counted=5000))
    return site


def a_late_delivery(site):
    """A delivery reported late: it happened three minutes ago, a finished minute."""
    deliver(site, now_mid_minute() - dt.timedelta(minutes=3), accurate=False)
    scopes_changed_announce(site_codes=[site.code])


def sparks_open(page, base_url: str, path: str, viewport: dict) -> list[dict]:
    page.set_viewport_size(viewport)
    page.goto(f"{base_url}{path}")
    live_state_wait(page, "live")
    return page.evaluate(SPARKS)


def test_sparklines_on_the_tv_and_a_phone_follow_the_live_update(page):
    site = in_thread(a_busy_hour)
    with daphne_server() as daphne:
        log_in(page, daphne.base_url, username="boss", password=PASSWORD)
        tv = sparks_open(page, daphne.base_url, "/?kiosk=1", {"width": 1920, "height": 1080})
        tv_fits = page.evaluate(FITS)
        deliveries_before = page.get_attribute('[data-sparkline="deliveries"] polyline', "points")
        with no_reload(page):
            in_thread(a_late_delivery, site)
            page.wait_for_function(
                "before => document.querySelector('[data-sparkline=\"deliveries\"] polyline')"
                ".getAttribute('points') !== before",
                arg=deliveries_before,
                timeout=5000,
            )
        phone = sparks_open(page, daphne.base_url, "/sites/ams/", {"width": 390, "height": 844})
        phone_fits_sideways = page.evaluate(
            "() => document.documentElement.scrollWidth <= innerWidth"
        )

    assert tv_fits  # the sparklines cost the TV no scrolling
    drawn = {spark["key"] for spark in tv}
    assert {"inventory_turnover", "order_accuracy", "deliveries", "counts"} <= drawn
    for spark in tv:
        assert spark["inside"] and spark["width"] >= 150 and spark["height"] >= 20, spark
    assert phone_fits_sideways
    for spark in phone:
        assert spark["inside"] and spark["width"] >= 120 and spark["height"] >= 14, spark
