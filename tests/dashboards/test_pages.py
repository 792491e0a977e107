"""Dashboard pages as a logged-in user sees them (Django test client, real database)."""

import re

import pytest
from django.test import Client

from core.roles import MANAGERS, STOCK_STAFF
from corrections.services import (
    CorrectionDraft,
    correction_approve,
    corrections_request,
)
from dashboards import panels
from dashboards.templatetags.dashboard_format import kpi_change, kpi_compact, kpi_format
from kpis.reads import kpis_compute
from ledger.models import MovementCause, MovementKind
from ledger.services import MovementRequest, movements_record
from tests.builders import receive, site_make, sku_make, user_make

pytestmark = pytest.mark.django_db

NON_TILE_KEYS = {"as_of", "site", "window", "feeds"}


@pytest.fixture
def client():
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user_make("viewer"))
    return client


def kpi_values(html: str) -> dict[str, str]:
    """The text of each data-kpi element, as a browser's textContent gives it."""
    elements = re.findall(r'data-kpi="([a-z0-9_]+)">(.*?)</p>', html, flags=re.S)
    return {key: re.sub(r"<[^>]+>", "", inner) for key, inner in elements}


def test_pages_need_a_login():
    anonymous = Client(HTTP_HOST="127.0.0.1")
    site_make("ams")
    for url in ("/", "/sites/ams/", "/skus/TEA/?site=ams"):
        response = anonymous.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")


def test_home_has_a_tile_for_every_kpi_key_showing_a_dash_for_none(client):
    response = client.get("/")

    html = response.content.decode()
    assert response.status_code == 200
    values = kpi_values(html)
    assert set(values) == set(kpis_compute()) - NON_TILE_KEYS
    # The KPI engine answers null for "none" (no deliveries yet): the tile shows a dash.
    assert values["order_accuracy"] == "—"
    assert values["deliveries"] == "0"
    assert values["mismatch_value"] == "0.00 USD"
    assert 'data-live-state="connecting"' in html
    charts = re.findall(r'class="chart" id="([\w-]+)" role="img" aria-label="[^"]+"', html)
    assert charts == list(panels.CHARTS)
    assert 'data-ws-path="/ws/dashboard/?window=1h"' in html


def test_tiles_format_values_as_the_api_gives_them(client, monkeypatch):
    # given the KPI engine's answer for a scope, with values that exercise each format
    site_make("ams")
    answer = {
        **kpis_compute(site="ams"),
        "order_accuracy": 0.9734,
        "cost_per_shipment": 4.5,
        "fulfillment_p90_s": 5400,
        "inventory_turnover": 12.345,
        "negative_stock": 2,
        "reconciliation_skew": 0.125,
        "reconciliation_skew_units": 9,
        "feeds": [
            {"source": "courier-app", "freshness_s": 12.0, "lag_p95_s": 0.8},
            {"source": "wms", "freshness_s": 3600.0, "lag_p95_s": None},
        ],
    }
    monkeypatch.setattr(panels, "kpis_compute", lambda **_: answer)

    html = client.get("/sites/ams/").content.decode()

    values = kpi_values(html)
    assert values["order_accuracy"] == "97.3%"
    assert values["cost_per_shipment"] == "4.50 USD"
    assert values["fulfillment_p90_s"] == "1.5 h"
    assert values["inventory_turnover"] == "12.35"
    assert values["reconciliation_skew"] == "12.5%"
    assert values["reconciliation_skew_units"] == "9"
    # negative stock above zero is judged bad, in words and an icon as well as colour
    assert re.search(
        r'data-tile="negative_stock" data-tile-state="bad">.*?✕</span> Bad', html, re.S
    )
    feeds = re.findall(r'data-feed="([^"]+)">.*?badge--(\w+)', html, flags=re.S)
    assert feeds == [("courier-app", "ok"), ("wms", "stale")]


@pytest.mark.parametrize(
    ("value", "value_format", "shown"),
    [
        (None, "percent", "—"),
        (None, "money", "—"),
        (None, "duration", "—"),
        (0, "percent", "0.0%"),
        (1234567, "integer", "1,234,567"),
        ("12.50", "money", "12.50 USD"),
        (42, "duration", "42 s"),
        (90, "duration", "1.5 min"),
        (3 * 86400, "duration", "3.0 d"),
        (None, "skew", "—"),
        (0.5, "skew", "50.0%"),
    ],
)
def test_kpi_format(value, value_format, shown):
    assert kpi_format(value, value_format) == shown


@pytest.mark.parametrize(
    ("value", "value_format", "shown"),
    [
        (9999, "integer", "9,999"),
        (234110, "integer", "234.1k"),
        (999_950, "integer", "1.0M"),
        (-1_234_567, "integer", "-1.2M"),
        (1.97e12, "money", "2.0T"),
        (2050, "money", "2,050.00"),
        (0.5, "percent", "50.0%"),
        (None, "integer", "—"),
    ],
)
def test_tile_values_are_short_enough_for_any_tile(value, value_format, shown):
    assert kpi_compact(value, value_format) == shown


@pytest.mark.parametrize(
    ("change", "value_format", "shown"),
    [
        (2, "integer", "+2"),
        (-0.012, "percent", "-1.2 pts"),
        (0, "integer", "±0"),
        (90, "duration", "+1.5 min"),
    ],
)
def test_tile_changes_are_signed(change, value_format, shown):
    assert kpi_change(change, value_format) == shown


def test_site_page_shows_its_lowest_stock_with_links_to_lineage(client):
    ams, tea = site_make("ams"), sku_make("TEA")
    movements_record(requests=[receive(ams, tea, 4)])

    html = client.get("/sites/ams/?window=7d").content.decode()

    assert 'data-stock-on-hand="ams/TEA">4<' in html
    assert 'href="/skus/TEA/?site=ams"' in html
    assert 'data-ws-path="/ws/dashboard/?site=ams&amp;window=7d"' in html


def test_home_shows_stock_by_site(client):
    ams, rtm, tea = site_make("ams"), site_make("rtm"), sku_make("TEA")
    movements_record(requests=[receive(ams, tea, 4), receive(rtm, tea, 6)])

    html = client.get("/").content.decode()

    assert 'data-site-on-hand="ams">4<' in html
    assert 'data-site-on-hand="rtm">6<' in html


def test_window_selector_swaps_only_the_dashboard_region(client):
    response = client.get("/?window=24h", headers={"HX-Request": "true"})

    html = response.content.decode()
    assert html.lstrip().startswith('<div id="dashboard"')
    assert "<html" not in html
    assert 'data-ws-path="/ws/dashboard/?window=24h"' in html
    assert re.search(r'data-window-choice="24h" aria-current="true"', html)


def test_a_history_restore_gets_the_whole_page(client):
    # htmx asks for the page with HX-Request when going back to a URL not in its cache
    response = client.get(
        "/?window=24h", headers={"HX-Request": "true", "HX-History-Restore-Request": "true"}
    )

    assert 'id="live-root"' in response.content.decode()


def test_an_unknown_window_says_so_and_shows_the_default(client):
    html = client.get("/?window=2h").content.decode()

    assert "unknown window &#x27;2h&#x27;; use one of 1h, 24h, 7d, 30d. Showing 1h." in html
    assert 'data-ws-path="/ws/dashboard/?window=1h"' in html


def test_an_unknown_site_is_not_found(client):
    assert client.get("/sites/nowhere/").status_code == 404


def test_kiosk_mode_has_no_navigation_and_large_type(client):
    site_make("ams")

    html = client.get("/?kiosk=1").content.decode()

    assert '<body class="kiosk">' in html
    assert 'class="topbar"' not in html
    assert 'aria-label="Sites"' not in html
    assert "data-rotate-urls" not in html
    assert 'data-window-choice="24h"' in html and "window=24h&amp;kiosk=1" in html


def test_kiosk_rotation_cycles_through_all_sites_then_each_site(client):
    site_make("ams"), site_make("rtm")

    html = client.get("/?kiosk=1&rotate=30").content.decode()

    urls = re.search(r'data-rotate-urls="([^"]+)"', html).group(1).split(" ")
    assert urls == [
        "/?kiosk=1&amp;rotate=30&amp;window=1h",
        "/sites/ams/?kiosk=1&amp;rotate=30&amp;window=1h",
        "/sites/rtm/?kiosk=1&amp;rotate=30&amp;window=1h",
    ]


def test_every_asset_is_local(client):
    html = client.get("/").content.decode()

    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sources
    assert not [source for source in sources if "//" in source]
    assert "/static/vendor/plotly-basic.min.js" in sources
    assert any("htmx" in source for source in sources)


def test_lineage_lists_movements_with_cause_user_and_level_after(client):
    # given a receipt from a feed and a correction by a user
    ams, tea, user = site_make("ams"), sku_make("TEA"), user_make("stocky")
    movements_record(requests=[receive(ams, tea, 10, cause_ref="wms:evt-1")])
    movements_record(
        requests=[
            MovementRequest(
                site="ams",
                sku="TEA",
                kind=MovementKind.CORRECTION,
                on_hand_delta=-3,
                occurred_at=receive(ams, tea, 1).occurred_at,
                cause=MovementCause.CORRECTION,
                cause_ref="correction:7",
                user_id=user.id,
            )
        ]
    )

    html = client.get("/skus/TEA/?site=ams").content.decode()

    rows = re.findall(r"<tr data-movement=.*?</tr>", html, flags=re.S)
    assert len(rows) == 2
    newest, oldest = rows
    assert "Correction" in newest and "correction:7" in newest and "stocky" in newest
    assert "-3" in newest and "<td data-on-hand-after>7</td>" in newest
    assert "Feed event" in oldest and "wms:evt-1" in oldest and "+10" in oldest
    assert "<strong data-level-on-hand>7</strong>" in html


def test_lineage_shows_the_corrections_reason_note_requester_and_approver_with_a_link(settings):
    # given a correction that waited and was approved with a note
    settings.CORRECTION_APPROVAL_THRESHOLD = "10"
    ams, tea = site_make("ams"), sku_make("TEA", unit_cost="5.00")
    movements_record(requests=[receive(ams, tea, 10)])
    clerk, boss = user_make("clerk", role=STOCK_STAFF), user_make("boss", role=MANAGERS)
    [correction] = corrections_request(
        drafts=[
            CorrectionDraft(site="ams", sku="TEA", reason="damaged", delta=-4, note="forklift")
        ],
        requested_by=clerk,
    )
    correction_approve(correction_id=correction.pk, approved_by=boss, note="photos seen")

    # when a stock controller (stock staff) and a role-less viewer open the lineage
    staff_client, viewer_client = Client(), Client()
    staff_client.force_login(user_make(role=STOCK_STAFF, is_staff=True))
    viewer_client.force_login(user_make())
    html = staff_client.get("/skus/TEA/?site=ams").content.decode()
    viewer_html = viewer_client.get("/skus/TEA/?site=ams").content.decode()

    # then the correction's row says why, who asked and who approved, and links to it
    newest = re.findall(r"<tr data-movement=.*?</tr>", html, flags=re.S)[0]
    assert f'data-origin="correction:{correction.pk}"' in newest
    assert "Damaged" in newest and "<q data-origin-note>forklift</q>" in newest
    assert "<span data-origin-requester>clerk</span>" in newest
    assert "<span data-origin-approver>boss</span>" in newest and "photos seen" in newest
    assert f'href="/admin/corrections/correction/{correction.pk}/change/"' in newest
    # and the link is only shown to who may open it
    assert "forklift" in viewer_html
    assert "/admin/corrections/correction/" not in viewer_html


def test_lineage_is_paginated(client):
    ams, tea = site_make("ams"), sku_make("TEA")
    movements_record(requests=[receive(ams, tea, 1) for _ in range(60)])

    first = client.get("/skus/TEA/?site=ams").content.decode()
    second = client.get("/skus/TEA/?site=ams&page=2").content.decode()
    beyond = client.get("/skus/TEA/?site=ams&page=zzz")

    assert first.count("<tr data-movement=") == 50
    assert "Page 1 of 2" in first and 'rel="next"' in first
    assert second.count("<tr data-movement=") == 10
    assert "<td data-on-hand-after>1</td>" in second  # the oldest movements come last
    assert beyond.status_code == 200  # a bad page number shows the first page


def test_lineage_without_a_site_offers_the_sites_that_hold_the_sku(client):
    ams, tea = site_make("ams"), sku_make("TEA")
    movements_record(requests=[receive(ams, tea, 1)])

    html = client.get("/skus/TEA/").content.decode()

    assert 'href="?site=ams"' in html
    assert "Choose a site above" in html


def test_lineage_of_an_unknown_sku_or_site_is_not_found(client):
    sku_make("TEA")
    assert client.get("/skus/NOPE/").status_code == 404
    assert client.get("/skus/TEA/?site=nowhere").status_code == 404


def contrast_ratio(foreground: str, background: str) -> float:
    """WCAG 2 contrast ratio of two #rrggbb colours."""

    def luminance(colour: str) -> float:
        channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    lighter, darker = sorted([luminance(foreground), luminance(background)], reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def test_text_colours_pass_wcag_aa_on_every_background():
    from django.conf import settings

    from dashboards import figures

    css = (settings.BASE_DIR / "static" / "css" / "app.css").read_text()
    colours = dict(re.findall(r"--(\w+): (#[0-9a-f]{6})", css))
    for text in ("text", "muted", "accent", "ok", "warn", "bad"):
        for background in ("bg", "panel"):
            assert contrast_ratio(colours[text], colours[background]) >= 4.5, (text, background)
    assert contrast_ratio(figures.TEXT_COLOUR, figures.PANEL_BACKGROUND) >= 4.5
    for series in figures.SERIES_COLOURS:  # lines and bars: 3:1 for graphical objects
        assert contrast_ratio(series, figures.PANEL_BACKGROUND) >= 3


def test_computing_a_view_costs_the_same_queries_however_many_stock_levels():
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    ams = site_make("ams")

    def queries_for_scopes() -> int:
        with CaptureQueriesContext(connection) as captured:
            panels.scope_view_build(panels.Scope(site="ams", window="1h"))
            panels.scope_view_build(panels.Scope(site=None, window="1h"))
        return len(captured)

    movements_record(requests=[receive(ams, sku_make(), 1) for _ in range(3)])
    with_three = queries_for_scopes()
    movements_record(requests=[receive(ams, sku_make(), 1) for _ in range(30)])
    with_thirty_three = queries_for_scopes()

    assert with_thirty_three == with_three
