"""Day buckets of one site's charts follow the site's local day (`Site.timezone`); all-sites
charts keep UTC days; instants are left for the page to show in the viewer's time zone.

Kiritimati is UTC+14: 23:30 there is 09:30 UTC the same UTC day as 00:30 the next local day
(10:30 UTC), so one UTC day holds two local days' orders."""

import datetime as dt
import json
import re
from zoneinfo import ZoneInfo

import pytest
from django.test import Client
from django.utils import timezone

from dashboards.panels import charts_build
from kpis.trends import kpi_trends_compute
from tests.builders import site_make, sku_make, user_make
from tests.dashboards.kpi_helpers import order_line

pytestmark = pytest.mark.django_db
KIRITIMATI = ZoneInfo("Pacific/Kiritimati")
MINUTES_A_DAY = 1440


@pytest.fixture
def orders_around_local_midnight():
    """One order at 23:30 and one at 00:30 Kiritimati time, three local days ago."""
    kir = site_make("kir", timezone="Pacific/Kiritimati")
    utc_site = site_make("utc")
    tea = sku_make("TEA")
    now = timezone.now()
    day = now.astimezone(KIRITIMATI).date() - dt.timedelta(days=3)
    late = dt.datetime.combine(day, dt.time(23, 30), tzinfo=KIRITIMATI)
    early = late + dt.timedelta(hours=1)
    order_line(kir, tea, late, order_id="late")
    order_line(kir, tea, early, order_id="early")
    order_line(utc_site, tea, early, order_id="elsewhere")
    return now, day, late


def _orders_by_day(points) -> dict[str, float]:
    return {
        point["t"][:10]: round(point["value"] * MINUTES_A_DAY, 6)
        for point in points[:-1]  # the last, under way, is per minute it has lasted
        if point["value"]
    }


def test_one_sites_days_are_its_local_days(orders_around_local_midnight):
    now, day, _late = orders_around_local_midnight

    trends = kpi_trends_compute(site="kir", window="30d", now=now)

    assert trends["day_zone"] == "Pacific/Kiritimati"
    assert _orders_by_day(trends["orders_per_minute"]) == {
        day.isoformat(): 1.0,
        (day + dt.timedelta(days=1)).isoformat(): 1.0,
    }
    # each point starts at a local midnight
    assert all(point["t"].endswith("T00:00:00+14:00") for point in trends["orders_per_minute"])


def test_all_sites_days_are_utc_days(orders_around_local_midnight):
    now, _day, late = orders_around_local_midnight
    utc_day = late.astimezone(dt.UTC).date()

    trends = kpi_trends_compute(window="30d", now=now)

    assert trends["day_zone"] == "UTC"
    assert _orders_by_day(trends["orders_per_minute"]) == {utc_day.isoformat(): 3.0}


def test_a_site_in_utc_keeps_utc_days(orders_around_local_midnight):
    now, _day, late = orders_around_local_midnight

    trends = kpi_trends_compute(site="utc", window="30d", now=now)

    assert trends["day_zone"] == "UTC"
    assert _orders_by_day(trends["orders_per_minute"]) == {
        late.astimezone(dt.UTC).date().isoformat(): 1.0
    }


def test_day_charts_name_whose_days_they_show_and_other_charts_are_for_the_viewer(
    orders_around_local_midnight,
):
    now, day, _late = orders_around_local_midnight

    days = charts_build(kpi_trends_compute(site="kir", window="30d", now=now))
    hours = charts_build(kpi_trends_compute(site="kir", window="24h", now=now))

    orders = days["chart-orders-per-minute"]
    assert orders["layout"]["xaxis"]["title"]["text"] == "Day (Pacific/Kiritimati)"
    assert day.isoformat() in orders["data"][0]["x"]
    assert "meta" not in orders["layout"]
    assert hours["chart-cost-per-shipment"]["layout"]["meta"] == {"local_times": True}


def test_the_site_page_draws_local_days(orders_around_local_midnight):
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user_make("viewer"))

    html = client.get("/sites/kir/?window=30d").content.decode()

    charts = json.loads(re.search(r'id="chart-data"[^>]*>(.*?)</script>', html, re.S).group(1))
    title = charts["chart-turnover-accuracy"]["layout"]["xaxis"]["title"]["text"]
    assert title == "Day (Pacific/Kiritimati)"
