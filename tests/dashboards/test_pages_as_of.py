"""The dashboards at a past instant (`?as_of=`): every tile, chart and table as it stood then,
marked not live, with the links keeping the instant; a bad `as_of` says why and shows live."""

import datetime as dt
import json
import re
from urllib.parse import quote

import pytest
from django.test import Client
from django.utils import timezone

from ledger.models import MovementKind
from tests.builders import site_make, sku_make, user_make
from tests.dashboards.kpi_helpers import move, order_line, receive, record

pytestmark = pytest.mark.django_db


@pytest.fixture
def client():
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user_make("viewer"))
    return client


@pytest.fixture
def history():
    """Site ams: 5 TEA two hours ago; an order of 7 TEA (a stockout) 90 minutes ago, 10 TEA
    received ten minutes ago."""
    now = timezone.now()
    ams, tea = site_make("ams"), sku_make("TEA")
    receive(ams, tea, 5, now - dt.timedelta(hours=2))
    record(move(ams, tea, MovementKind.ORDER_RESERVED, now - dt.timedelta(minutes=90), reserved=7))
    order_line(ams, tea, now - dt.timedelta(minutes=90), qty=7)
    receive(ams, tea, 10, now - dt.timedelta(minutes=10))
    return now


def _cell(html: str, attribute: str) -> str:
    return re.search(rf'{attribute}="ams/TEA">([^<]*)<', html).group(1)


@pytest.mark.parametrize("path", ["/", "/sites/ams/"])
def test_a_past_instant_freezes_the_page_at_it(client, history, path):
    instant = (history - dt.timedelta(hours=1)).astimezone(dt.timezone(dt.timedelta(hours=9)))

    html = client.get(f"{path}?window=24h&as_of={quote(instant.isoformat())}").content.decode()

    assert _cell(html, "data-stock-on-hand") == "5"
    assert _cell(html, "data-stock-available") == "-2"
    assert 'data-kpi="stockouts">1<' in html
    assert "(not live)" in html
    assert f'data-frozen-at="{instant.isoformat()}"' in html
    assert 'id="back-to-live"' in html
    # the window and site links stay at the instant
    assert f"window=1h&amp;as_of={quote(instant.isoformat())}" in html
    # the charts are those of that instant: TEA was out (available -2); now it is not
    charts = json.loads(re.search(r'id="chart-data"[^>]*>(.*?)</script>', html, re.S).group(1))
    worst = charts["chart-worst-stockouts"]["data"][0]
    assert (worst["x"], worst["y"]) == ([-2], ["ams / TEA"])


def test_live_is_unchanged_without_as_of(client, history):
    html = client.get("/sites/ams/").content.decode()

    assert _cell(html, "data-stock-on-hand") == "15"
    assert "data-frozen-at" not in html
    assert "(not live)" not in html
    assert 'data-live-state="connecting"' in html


@pytest.mark.parametrize(
    ("as_of", "says"),
    [("2026-03-01T14:05:00", "needs a UTC offset"), ("tomorrow", "ISO 8601")],
)
def test_a_bad_as_of_says_why_and_shows_live(client, history, as_of, says):
    html = client.get(f"/sites/ams/?as_of={quote(as_of)}").content.decode()

    assert says in html
    assert "Showing live" in html
    assert _cell(html, "data-stock-on-hand") == "15"
    assert "data-frozen-at" not in html


def test_a_future_as_of_says_why_and_shows_live(client, history):
    later = (history + dt.timedelta(hours=1)).isoformat()

    html = client.get(f"/?as_of={quote(later)}").content.decode()

    assert "must not be in the future" in html
    assert "data-frozen-at" not in html
