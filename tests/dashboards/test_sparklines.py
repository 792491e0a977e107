"""Each KPI tile's sparkline: its trend over the window, one point per finished bucket."""

import datetime as dt

import pytest
from django.test import Client

from dashboards.panels import TILE_SPARKLINES, kpi_tiles
from dashboards.templatetags.dashboard_format import sparkline, sparkline_segments
from tests.builders import site_make, sku_make, user_make
from tests.dashboards.kpi_helpers import count, deliver, now_mid_minute, receive, record


def test_the_highest_value_is_drawn_at_the_top_and_a_gap_breaks_the_line():
    assert sparkline_segments([1, 3, None, 2, 2]) == [
        "0.00,22.00 25.00,2.00",
        "75.00,12.00 100.00,12.00",
    ]
    assert sparkline_segments([5, 5]) == ["0.00,12.00 100.00,12.00"]  # flat: mid-height


def test_no_trend_no_line():
    assert sparkline_segments([]) == sparkline_segments([None, 4, None]) == []
    assert sparkline([7]) == ""


def test_the_svg_holds_no_script_and_no_inline_style():
    svg = str(sparkline([0.5, 0.25, 1.0]))
    assert svg.startswith('<svg class="spark" viewBox="0 0 100 24"')
    assert 'aria-hidden="true"' in svg and "style=" not in svg and "<script" not in svg
    assert svg.count("<polyline") == 1


def test_the_bucket_under_way_is_left_out():
    minutes = (("a", 4), ("b", 6), ("c", 1))  # the last one under way
    trends = {"deliveries": [{"t": t, "value": value} for t, value in minutes]}

    tiles = {tile["key"]: tile for tile in kpi_tiles({}, trends=trends)}

    assert tiles["deliveries"]["sparkline"] == [4, 6]
    assert tiles["fulfillment_p50_s"]["sparkline"] == []  # a percentile: no series
    assert tiles["stockouts"]["sparkline"] == []  # the stock as it stands: no series


@pytest.mark.django_db
def test_the_dashboard_draws_a_sparkline_on_every_tile_with_a_trend():
    site, sku = site_make("ams"), sku_make("TEA")
    now = now_mid_minute()
    receive(site, sku, 100, now - dt.timedelta(minutes=50))
    for minutes_ago in (40, 30, 20, 10):
        deliver(site, now - dt.timedelta(minutes=minutes_ago), accurate=minutes_ago != 20)
        record(count(site, sku, now - dt.timedelta(minutes=minutes_ago), counted=100))
    client = Client()
    client.force_login(user_make(role="managers"))

    page = client.get("/sites/ams/?window=1h").content.decode()

    drawn = {key for key in TILE_SPARKLINES if f'data-sparkline="{key}"' in page}
    assert {"deliveries", "order_accuracy", "counts", "stock_mismatch_rate"} <= drawn
    assert 'data-spark-points="60"' in page  # a minute each; the minute under way left out
    assert "each minute of the 1h window" in page
    day = client.get("/sites/ams/?window=30d").content.decode()
    assert "each day of the 30d window" in day
