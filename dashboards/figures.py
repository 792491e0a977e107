"""Dashboard charts: pure functions from trend data (kpi_trends_compute) to Plotly figures.

No database here. Every chart has a title and axis titles; colours are chosen for contrast on
the dark panel (WCAG AA for text: light grey on #1e293b), and series differ by dash and marker
as well as hue, so colour is never the only cue.

A figure is the JSON-safe dict plotly.js takes (`{"data": [...], "layout": {...}}`), written
directly rather than through `plotly.graph_objects`: building and validating five
`go.Figure`s, then serialising them, was ~10 ms of CPU in every live update (a third of the
view computation), for the same JSON. The tests validate every figure with `go.Figure(figure)`,
which refuses any property plotly does not know.
"""

from collections.abc import Sequence

PANEL_BACKGROUND = "#1e293b"
TEXT_COLOUR = "#f1f5f9"
GRID_COLOUR = "#475569"
SERIES_COLOURS = ("#38bdf8", "#fbbf24", "#86efac", "#f9a8d4")
NO_DATA_TEXT = "No data in this window yet"
# What an empty chart says: the truth of each, not one "no data" for all (no stockouts is good
# news, not missing data).
NO_ORDERS_TEXT = "No orders in this window"
NO_DELIVERIES_TEXT = "No deliveries in this window"
NO_COUNTS_TEXT = "No counts in this window"
NO_STOCKOUTS_TEXT = "No stockouts now"


def _figure(
    traces: Sequence,
    *,
    title: str,
    x_title: str,
    y_title: str,
    layout: dict | None = None,
    empty_text: str = NO_DATA_TEXT,
    force_empty: bool = False,
) -> dict:
    # Empty when no trace has a value to draw (a series of gaps included).
    empty = force_empty or all(_nothing_to_draw(trace) for trace in traces)
    axis = {"gridcolor": GRID_COLOUR, "zeroline": False}
    if empty:
        # Plotly's placeholder range (-1..6) would read as data: show bare axes instead.
        axis = {**axis, "showticklabels": False, "showgrid": False}
    # No template: plotly.js's own defaults (plotly.py's default template would add ~10 kB to
    # every frame).
    base = {
        "title": {"text": title, "x": 0.01, "font": {"size": 16}},
        "paper_bgcolor": PANEL_BACKGROUND,
        "plot_bgcolor": PANEL_BACKGROUND,
        "font": {"color": TEXT_COLOUR, "family": "system-ui, sans-serif", "size": 13},
        "margin": {"l": 64, "r": 24, "t": 48, "b": 56},
        "legend": {"orientation": "h", "y": -0.25},
        "xaxis": {**axis, "title": {"text": x_title}},
        # Values start at zero: a bar or line from an arbitrary floor exaggerates change.
        "yaxis": {**axis, "title": {"text": y_title}, "rangemode": "tozero"},
    }
    if empty:
        base["annotations"] = [
            {
                "text": empty_text,
                "showarrow": False,
                "xref": "paper",
                "yref": "paper",
                "x": 0.5,
                "y": 0.5,
                "font": {"size": 15, "color": TEXT_COLOUR},
            }
        ]
    for key, value in (layout or {}).items():
        base[key] = {**base[key], **value} if isinstance(base.get(key), dict) else value
    return {"data": list(traces), "layout": base}


def _nothing_to_draw(trace: dict) -> bool:
    values = trace["x"] if trace.get("orientation") == "h" else trace["y"]
    return all(value is None for value in values)


def _times_values(points: Sequence[dict], scale: float = 1) -> tuple[list, list]:
    times = [point["t"] for point in points]
    values = [None if point.get("value") is None else point["value"] * scale for point in points]
    return times, values


def _line(
    points: Sequence[dict],
    *,
    name: str,
    colour: str,
    scale: float = 1,
    dash: str = "solid",
    symbol: str = "circle",
    yaxis: str = "y",
) -> dict:
    times, values = _times_values(points, scale=scale)
    return {
        "type": "scatter",
        "x": times,
        "y": values,
        "name": name,
        "mode": "lines+markers",
        "line": {"color": colour, "dash": dash},
        "marker": {"symbol": symbol},
        "yaxis": yaxis,
    }


def orders_per_minute_figure(points: Sequence[dict]) -> dict:
    times, values = _times_values(points)
    bars = {
        "type": "bar",
        "x": times,
        "y": values,
        "name": "Orders",
        "marker": {"color": SERIES_COLOURS[0]},
    }
    no_orders = all(not value for value in values)
    return _figure(
        [bars],
        title="Orders per minute",
        x_title="Time (UTC)",
        y_title="Orders per minute",
        # A window of zero orders is empty too: bars of height 0 on a -1..1 axis say nothing.
        empty_text=NO_ORDERS_TEXT,
        force_empty=no_orders,
    )


def turnover_accuracy_figure(*, turnover: Sequence[dict], accuracy: Sequence[dict]) -> dict:
    return _figure(
        [
            _line(turnover, name="Turnover (turns / year)", colour=SERIES_COLOURS[0]),
            _line(
                accuracy,
                name="Order accuracy (%)",
                colour=SERIES_COLOURS[1],
                scale=100,
                dash="dash",
                symbol="diamond",
                yaxis="y2",
            ),
        ],
        title="Turnover and accuracy",
        x_title="Time (UTC)",
        y_title="Turnover (turns / year)",
        layout={
            # Percent on fixed, round ticks; a little room above 100 % so a perfect hour is
            # drawn whole instead of clipped at the top.
            "yaxis2": {
                "title": {"text": "Order accuracy (%)"},
                "overlaying": "y",
                "side": "right",
                "range": [0, 104],
                "tickmode": "array",
                "tickvals": [0, 25, 50, 75, 100],
                "ticktext": ["0%", "25%", "50%", "75%", "100%"],
                "showgrid": False,
                "zeroline": False,
            },
            "margin": {"r": 64},
        },
    )


def cost_per_shipment_figure(points: Sequence[dict], *, currency: str) -> dict:
    return _figure(
        [_line(points, name="Cost per shipment", colour=SERIES_COLOURS[2])],
        title="Cost per shipment",
        x_title="Time (UTC)",
        y_title=f"Cost per shipment ({currency})",
        empty_text=NO_DELIVERIES_TEXT,
    )


def mismatch_by_site_figure(rows: Sequence[dict]) -> dict:
    bars = {
        "type": "bar",
        "x": [row["site"] for row in rows],
        "y": [None if row.get("rate") is None else row["rate"] * 100 for row in rows],
        "name": "Mismatch rate",
        "marker": {"color": SERIES_COLOURS[3]},
        "customdata": [[row.get("units"), row.get("value")] for row in rows],
        "hovertemplate": "%{x}: %{y:.1f}%<br>%{customdata[0]} units, %{customdata[1]}"
        "<extra></extra>",
    }
    return _figure(
        [bars],
        title="Stock mismatch by site",
        x_title="Site",
        y_title="Mismatch rate (%)",
        empty_text=NO_COUNTS_TEXT,
    )


def worst_stockouts_figure(rows: Sequence[dict]) -> dict:
    bars = {
        "type": "bar",
        "x": [row["available"] for row in rows],
        "y": [f"{row['site']} / {row['sku']}" for row in rows],
        "orientation": "h",
        "name": "Available",
        "marker": {"color": SERIES_COLOURS[1]},
    }
    return _figure(
        [bars],
        title="Worst stockouts",
        x_title="Available units",
        y_title="Site / SKU",
        empty_text=NO_STOCKOUTS_TEXT,
        # Most negative first, at the top.
        layout={"yaxis": {"autorange": "reversed", "automargin": True}},
    )


NO_CHANNEL_TEXT = "(no channel)"


def channel_cost_figure(rows: Sequence[dict], *, currency: str) -> dict:
    """Cost per shipment of each channel of the window: the `by=channel` breakdown, in its
    order (most deliveries first)."""
    bars = {
        "type": "bar",
        "x": [row["key"] or NO_CHANNEL_TEXT for row in rows],
        "y": [row["cost_per_shipment"] for row in rows],
        "name": "Cost per shipment",
        "marker": {"color": SERIES_COLOURS[2]},
        "customdata": [[row["deliveries"]] for row in rows],
        "hovertemplate": f"%{{x}}: %{{y:.2f}} {currency}<br>%{{customdata[0]}} deliveries"
        "<extra></extra>",
    }
    return _figure(
        [bars],
        title="Cost per shipment by channel",
        x_title="Channel",
        y_title=f"Cost per shipment ({currency})",
        empty_text=NO_DELIVERIES_TEXT,
    )
