"""The "Restock now" panel on the dashboards, its live fragment, and a site's CSV download."""

import csv
import datetime as dt
import io
import re

import pytest
from django.test import Client
from django.utils import timezone

from dashboards import panels
from ledger.models import MovementKind
from tests.builders import site_make, sku_make, user_make
from tests.dashboards.kpi_helpers import move, receive, record

pytestmark = pytest.mark.django_db

DAY = dt.timedelta(days=1)


@pytest.fixture
def client():
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user_make("viewer"))
    return client


@pytest.fixture
def two_sites():
    """ams: TEA at 2 days of cover (28 sold, 2 left), JAM below its reorder point without
    demand, OAT comfortable; rot: TEA at 1 day of cover (28 sold, 1 left)."""
    ams, rot = site_make("ams"), site_make("rot")
    tea, jam, oat = sku_make("TEA"), sku_make("JAM", reorder_point=6), sku_make("OAT")
    now = timezone.now()
    for site, left in ((ams, 2), (rot, 1)):
        receive(site, tea, 28 + left, now - 10 * DAY)
        record(move(site, tea, MovementKind.ORDER_DISPATCHED, now - DAY, on_hand=-28))
    receive(ams, jam, 4, now - DAY)
    receive(ams, oat, 500, now - 10 * DAY)
    record(move(ams, oat, MovementKind.ORDER_DISPATCHED, now - DAY, on_hand=-28))
    return ams, rot


def _restock_rows(html: str) -> list[str]:
    return re.findall(r'data-restock="([^"]+)"', html)


def test_site_dashboard_lists_what_to_reorder_most_urgent_first(client, two_sites):
    html = client.get("/sites/ams/").content.decode()

    assert _restock_rows(html) == ["ams/TEA", "ams/JAM"]
    assert re.search(r'data-restock-cover="ams/TEA">2\.0<', html)
    assert re.search(r'data-restock-cover="ams/JAM">no demand<', html)
    # TEA: ceil(1 * 14) + 0 - 2 = 12; JAM: 0 + 6 - 4 = 2
    assert re.search(r'data-restock-qty="ams/TEA">12<', html)
    assert re.search(r'data-restock-qty="ams/JAM">2<', html)
    assert 'href="/sites/ams/restock.csv"' in html


def test_all_sites_dashboard_lists_every_sites_pairs(client, two_sites):
    html = client.get("/").content.decode()

    assert _restock_rows(html) == ["rot/TEA", "ams/TEA", "ams/JAM"]
    assert "restock.csv" not in html  # a purchase order is a site's


def test_nothing_to_reorder_says_so(client):
    site_make("ams")

    html = client.get("/sites/ams/").content.decode()

    assert _restock_rows(html) == []
    assert "data-restock-none" in html


def test_the_panel_shows_the_most_urgent_and_counts_the_rest(client):
    ams = site_make("ams")
    for index in range(panels.RESTOCK_ROWS + 2):
        receive(ams, sku_make(f"S{index:02}", reorder_point=index + 1), index, timezone.now())

    html = client.get("/sites/ams/").content.decode()

    assert len(_restock_rows(html)) == panels.RESTOCK_ROWS
    assert f"{panels.RESTOCK_ROWS + 2} SKUs to reorder" in html
    assert f"({panels.RESTOCK_ROWS} shown)" in html


def test_the_live_update_carries_the_panel(two_sites):
    view = panels.scope_view_build(panels.Scope(site="rot", window="1h"))

    assert 'id="restock"' in view["html"]
    assert 'hx-swap-oob="true"' in view["html"]
    assert _restock_rows(view["html"]) == ["rot/TEA"]


def test_a_sites_suggestions_download_as_csv(client, two_sites):
    response = client.get("/sites/ams/restock.csv")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    today = timezone.now().strftime("%Y-%m-%d")
    assert response["Content-Disposition"] == f'attachment; filename="restock-ams-{today}.csv"'
    header, *rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert ",".join(header) == (
        "site,sku,suggested_qty,available,reorder_point,demand_28d,daily_demand,days_of_cover"
    )
    assert rows == [
        ["ams", "TEA", "12", "2", "", "28", "1.00", "2.0"],
        ["ams", "JAM", "2", "4", "6", "0", "0.00", ""],
    ]


def test_the_csv_of_an_unknown_site_is_not_found_and_needs_a_login(client):
    assert client.get("/sites/nowhere/restock.csv").status_code == 404
    site_make("ams")
    anonymous = Client(HTTP_HOST="127.0.0.1")
    response = anonymous.get("/sites/ams/restock.csv")
    assert response.status_code == 302
    assert "/login" in response["Location"] or "/accounts/login" in response["Location"]
