"""Chart builders: pure functions from trend data to Plotly figures (no database).

The builders give plotly.js's JSON as plain dicts; `valid` reads each through `go.Figure`, which
raises on any property or value plotly does not know, and gives attribute access.
"""

import json
import re
from pathlib import Path

import plotly.graph_objects as go
import pytest
from django.conf import settings
from plotly.offline import get_plotlyjs_version

from dashboards import figures

POINTS = [
    {"t": "2026-11-23T10:00:00+00:00", "value": 0.9},
    {"t": "2026-11-23T10:01:00+00:00", "value": None},
    {"t": "2026-11-23T10:02:00+00:00", "value": 0.75},
]

# The `by=channel` breakdown as /api/kpis gives it (an order without a channel has key "").
CHANNELS = [
    {"key": "web", "deliveries": 4, "order_accuracy": 0.75, "cost_per_shipment": 6.0,
     "fulfillment_p50_s": 150.0, "fulfillment_p90_s": 474.0},
    {"key": "", "deliveries": 1, "order_accuracy": 1.0, "cost_per_shipment": 2.5,
     "fulfillment_p50_s": None, "fulfillment_p90_s": None},
]  # fmt: skip


def valid(figure: dict) -> go.Figure:
    json.dumps(figure)  # JSON-safe as it is: the live frame sends it without an encoder
    return go.Figure(figure)


def every_figure(data: bool, *, as_dicts: bool = False):
    points = POINTS if data else []
    rows = [{"site": "ams", "rate": 0.25, "units": 4, "value": 10.0}] if data else []
    stockouts = [{"site": "ams", "sku": "TEA", "available": -3, "reorder_point": 5}]
    built = [
        figures.orders_per_minute_figure(points),
        figures.turnover_accuracy_figure(turnover=points, accuracy=points),
        figures.cost_per_shipment_figure(points, currency="EUR"),
        figures.mismatch_by_site_figure(rows),
        figures.worst_stockouts_figure(stockouts if data else []),
        figures.channel_cost_figure(CHANNELS if data else [], currency="EUR"),
    ]
    return built if as_dicts else [valid(figure) for figure in built]


@pytest.mark.parametrize("data", [True, False])
def test_every_chart_has_a_title_and_axis_titles(data):
    for figure in every_figure(data):
        layout = figure.layout
        assert layout.title.text
        assert layout.xaxis.title.text
        assert layout.yaxis.title.text


def test_an_empty_chart_says_why_it_is_empty_and_hides_the_placeholder_axes():
    texts = [[a.text for a in figure.layout.annotations] for figure in every_figure(data=False)]
    assert texts == [
        [figures.NO_ORDERS_TEXT],
        [figures.NO_DATA_TEXT],
        [figures.NO_DELIVERIES_TEXT],
        [figures.NO_COUNTS_TEXT],
        [figures.NO_STOCKOUTS_TEXT],  # good news, not missing data
        [figures.NO_DELIVERIES_TEXT],
    ]
    for figure in every_figure(data=False):
        assert figure.layout.xaxis.showticklabels is False


def test_charts_of_buckets_without_a_value_are_empty_too():
    # sites without counts, a window of zero orders: axes alone would say nothing
    mismatch = valid(figures.mismatch_by_site_figure([{"site": "ams", "rate": None}]))
    orders = valid(figures.orders_per_minute_figure([{"t": POINTS[0]["t"], "value": 0.0}]))
    assert [a.text for a in mismatch.layout.annotations] == [figures.NO_COUNTS_TEXT]
    assert [a.text for a in orders.layout.annotations] == [figures.NO_ORDERS_TEXT]


def test_accuracy_axis_reads_0_to_100_percent_on_round_ticks_with_room_for_100():
    figure = valid(figures.turnover_accuracy_figure(turnover=POINTS, accuracy=POINTS))
    assert list(figure.layout.yaxis2.tickvals) == [0, 25, 50, 75, 100]
    assert figure.layout.yaxis2.range[0] == 0 and figure.layout.yaxis2.range[1] > 100


def test_a_chart_with_data_has_no_placeholder_text():
    for figure in every_figure(data=True):
        assert not figure.layout.annotations


def test_accuracy_is_plotted_in_percent_on_its_own_axis_and_gaps_stay_gaps():
    figure = valid(figures.turnover_accuracy_figure(turnover=POINTS, accuracy=POINTS))
    turnover, accuracy = figure.data
    assert list(turnover.y) == [0.9, None, 0.75]
    assert list(accuracy.y) == [90.0, None, 75.0]
    assert accuracy.yaxis == "y2"
    assert figure.layout.yaxis2.title.text == "Order accuracy (%)"
    # series differ by dash and marker, not by colour alone
    assert turnover.line.dash != accuracy.line.dash


def test_cost_axis_names_the_currency_and_mismatch_is_in_percent():
    cost = valid(figures.cost_per_shipment_figure(POINTS, currency="EUR"))
    assert "EUR" in cost.layout.yaxis.title.text
    mismatch = valid(figures.mismatch_by_site_figure([{"site": "ams", "rate": 0.25}]))
    assert list(mismatch.data[0].y) == [25.0]


def test_worst_stockouts_lists_site_and_sku_most_negative_at_the_top():
    figure = valid(
        figures.worst_stockouts_figure(
            [
                {"site": "ams", "sku": "TEA", "available": -9, "reorder_point": 5},
                {"site": "rtm", "sku": "MILK", "available": 0, "reorder_point": None},
            ]
        )
    )
    assert list(figure.data[0].y) == ["ams / TEA", "rtm / MILK"]
    assert figure.layout.yaxis.autorange == "reversed"


def test_figures_stay_small_enough_to_send_on_every_update():
    # plotly.py's default template would add ~10 kB per chart to every live frame.
    for figure in every_figure(data=True, as_dicts=True):
        assert "template" not in figure["layout"]
        assert len(json.dumps(figure)) < 3000


def test_the_vendored_plotly_bundle_draws_every_trace_type_we_use_at_plotlys_version():
    # The dashboard loads plotly.js's "basic" bundle (static/vendor), a quarter of the full one:
    # a chart of a trace type it lacks would stay blank, and a bundle older than plotly.py's
    # could miss properties the figures use.
    bundle = (Path(settings.BASE_DIR) / "static/vendor/plotly-basic.min.js").read_text()
    registered = set(re.findall(r'moduleType:"trace",name:"([a-z0-9]+)"', bundle))
    drawn = {
        trace["type"]
        for data in (True, False)
        for figure in every_figure(data, as_dicts=True)
        for trace in figure["data"]
    }

    assert drawn <= registered, f"{drawn - registered} missing from plotly-basic.min.js"
    assert f"v{get_plotlyjs_version()}\n" in bundle[:200]


def test_channel_chart_shows_each_channels_cost_per_shipment_in_the_breakdowns_order():
    figure = valid(figures.channel_cost_figure(CHANNELS, currency="EUR"))

    (bars,) = figure.data
    assert list(bars.x) == ["web", figures.NO_CHANNEL_TEXT]
    assert list(bars.y) == [6.0, 2.5]
    assert [list(row) for row in bars.customdata] == [[4], [1]]
    assert figure.layout.yaxis.title.text == "Cost per shipment (EUR)"
    assert figure.layout.title.text == "Cost per shipment by channel"
