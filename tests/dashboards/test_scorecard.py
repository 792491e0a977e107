"""The courier scorecard page as a logged-in user sees it (Django test client, real database)."""

import re

import pytest
from django.test import Client
from django.utils import timezone

from tests.builders import site_make, user_make
from tests.dashboards.kpi_helpers import deliver

pytestmark = pytest.mark.django_db


@pytest.fixture
def client():
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user_make("viewer"))
    return client


@pytest.fixture
def deliveries():
    """bike-7: 2 deliveries, one inaccurate, 4 + 6; van-2: 1, accurate, 12, 10 min known;
    cargo-1: 1 at the other site, 3."""
    north, south = site_make("north"), site_make("south")
    now = timezone.now()
    minute = timezone.timedelta(minutes=1)
    deliver(north, now - 5 * minute, courier="bike-7", cost="4.00")
    deliver(north, now - 6 * minute, courier="bike-7", cost="6.00", accurate=False)
    deliver(north, now - 7 * minute, courier="van-2", cost="12.00", created_at=now - 17 * minute)
    deliver(south, now - 8 * minute, courier="cargo-1", cost="3.00")


def couriers_listed(html: str) -> list[str]:
    return re.findall(r'<tr data-courier="([^"]*)">', html)


def test_the_scorecard_lists_every_courier_with_its_figures(client, deliveries):
    html = client.get("/couriers/?window=1h").content.decode()

    assert couriers_listed(html) == ["bike-7", "cargo-1", "van-2"]
    row = html[html.index('data-courier="bike-7"') :].split("</tr>")[0]
    assert '<td class="number" data-field="deliveries" data-label="Deliveries">2</td>' in row
    assert (
        '<td class="number" data-field="order_accuracy" data-label="Order accuracy">50.0%</td>'
        in row
    )
    assert (
        '<td class="number" data-field="cost_per_shipment" data-label="Cost per shipment">5.00</td>'
        in row
    )
    assert (
        '<td class="number" data-field="fulfillment_p50_s" data-label="Fulfillment p50">—</td>'
        in row
    )
    van = html[html.index('data-courier="van-2"') :].split("</tr>")[0]
    assert (
        '<td class="number" data-field="fulfillment_p50_s" data-label="Fulfillment p50">'
        "10.0 min</td>" in van
    )
    assert 'aria-sort="descending"' in html  # deliveries, most first


def test_sorting_by_a_column_and_back(client, deliveries):
    by_cost = client.get("/couriers/?window=1h&sort=cost_per_shipment&dir=desc").content.decode()
    cheapest = client.get("/couriers/?window=1h&sort=cost_per_shipment&dir=asc").content.decode()
    by_p50 = client.get("/couriers/?window=1h&sort=fulfillment_p50_s&dir=asc").content.decode()

    assert couriers_listed(by_cost) == ["van-2", "bike-7", "cargo-1"]
    assert couriers_listed(cheapest) == ["cargo-1", "bike-7", "van-2"]
    # couriers without a known fulfillment time come last, whatever the direction
    assert couriers_listed(by_p50) == ["van-2", "bike-7", "cargo-1"]
    # the sorted column's link asks for the other direction
    assert "sort=cost_per_shipment&amp;dir=asc" in by_cost


def test_one_site_and_a_window(client, deliveries):
    html = client.get("/couriers/?site=north&window=24h").content.decode()

    assert couriers_listed(html) == ["bike-7", "van-2"]
    assert 'data-ws-path="/ws/dashboard/?site=north&amp;window=24h"' in html


def test_bad_choices_say_why_and_show_the_defaults(client, deliveries):
    html = client.get("/couriers/?window=2h&sort=mood&dir=up").content.decode()

    assert "unknown window &#x27;2h&#x27;" in html or "unknown window" in html
    assert "sort must be one of key, deliveries, order_accuracy" in html
    assert couriers_listed(html) == ["bike-7", "cargo-1", "van-2"]
    assert client.get("/couriers/?site=nowhere").status_code == 404


def test_no_deliveries_says_so(client):
    site_make("north")

    html = client.get("/couriers/?window=1h").content.decode()

    assert "No deliveries in the last 1h." in html
    assert couriers_listed(html) == []


def test_htmx_gets_only_the_table_region(client, deliveries):
    response = client.get("/couriers/?window=1h&sort=key&dir=asc", HTTP_HX_REQUEST="true")

    html = response.content.decode()
    assert html.lstrip().startswith('<section id="scorecard"')
    assert couriers_listed(html) == ["bike-7", "cargo-1", "van-2"]


def test_the_header_links_to_the_scorecard_and_it_needs_a_login(client):
    assert 'href="/couriers/">Couriers</a>' in client.get("/").content.decode()
    anonymous = Client(HTTP_HOST="127.0.0.1")
    response = anonymous.get("/couriers/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
