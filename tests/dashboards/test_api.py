"""`GET /api/kpis` and `GET /api/stock`: auth, answers, errors, bounded queries."""

import datetime as dt
import json

import pytest
from django.db import connection

from ingest.sources import (
    feed_source_create,
    feed_source_end_token_grace,
    feed_source_rotate_token,
)
from ledger.models import MovementKind
from tests.builders import site_make, sku_make, user_make
from tests.dashboards.kpi_helpers import count, deliver, move, order_line, receive, record, ship

pytestmark = pytest.mark.django_db

KPI_KEYS = {
    "as_of",
    "site",
    "window",
    "inventory_turnover",
    "order_accuracy",
    "deliveries",
    "stock_mismatch_rate",
    "counts",
    "mismatch_units",
    "mismatch_value",
    "cost_per_shipment",
    "fulfillment_p50_s",
    "fulfillment_p90_s",
    "stockouts",
    "negative_stock",
    "below_reorder_point",
    "reconciliation_skew",
    "feeds",
}


@pytest.fixture
def token():
    return feed_source_create(name="wms").token


def _bearer(token: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def test_kpis_need_a_session_or_a_feed_token(client):
    response = client.get("/api/kpis")

    assert response.status_code == 401
    assert "Bearer" in response.json()["detail"]
    assert client.get("/api/kpis", **_bearer("iof_not-a-token")).status_code == 401


def test_a_deactivated_feed_token_no_longer_reads(client, token):
    from ingest.models import FeedSource

    FeedSource.objects.update(is_active=False)

    assert client.get("/api/kpis", **_bearer(token)).status_code == 401


def test_reads_take_a_feed_token_as_the_feed_api_does(client):
    # given a source whose token was rotated: the old one is in its grace period
    from ingest.models import FeedSource

    issued = feed_source_create(name="wms")
    source, old_token = issued.source, issued.token
    new_token = feed_source_rotate_token(source=source, grace=dt.timedelta(hours=1))

    # then both read, and reading notes no use of either (only the producer's sends do)
    assert client.get("/api/stock", **_bearer(old_token)).status_code == 200
    assert client.get("/api/stock", **_bearer(new_token)).status_code == 200
    used = FeedSource.objects.values_list("token_last_used_at", "previous_token_last_used_at")
    assert list(used) == [(None, None)]
    # and once the grace period is ended, the old one no longer reads
    feed_source_end_token_grace(source=source)
    assert client.get("/api/stock", **_bearer(old_token)).status_code == 401


def test_kpis_answer_a_feed_token_with_numbers(client, token):
    # given a delivery and a dispatch in the last hour
    site, sku = site_make("berlin"), sku_make("X", unit_cost="2.50")
    now = dt.datetime.now(dt.UTC)
    receive(site, sku, 10, now - dt.timedelta(hours=3))
    ship(site, sku, 2, now - dt.timedelta(minutes=20), now - dt.timedelta(minutes=10))
    created = now - dt.timedelta(minutes=20)
    deliver(site, now - dt.timedelta(minutes=5), cost="4.25", created_at=created)

    response = client.get("/api/kpis?site=berlin&window=1h", **_bearer(token))

    assert response.status_code == 200
    body = json.loads(response.content)
    assert body.keys() >= KPI_KEYS
    assert (body["site"], body["window"], body["deliveries"]) == ("berlin", "1h", 1)
    assert body["cost_per_shipment"] == 4.25  # a JSON number, not a string
    assert body["fulfillment_p50_s"] == 900.0
    assert isinstance(body["inventory_turnover"], float)
    assert body["order_accuracy"] == 1.0


def test_kpis_answer_a_logged_in_user_for_all_sites(client):
    client.force_login(user_make())

    body = client.get("/api/kpis?window=30d").json()

    assert (body["site"], body["window"], body["order_accuracy"]) == (None, "30d", None)


def _history(sites: int, per_site: int) -> None:
    now = dt.datetime.now(dt.UTC)
    skus = [sku_make(unit_cost="1.5", reorder_point=2) for _ in range(3)]
    for site_index in range(sites):
        site = site_make(f"q{site_index}")
        for index in range(per_site):
            at = now - dt.timedelta(hours=index * 7 % 700, minutes=index)
            sku = skus[index % 3]
            receive(site, sku, 5, at)
            ship(site, sku, 2, at, at + dt.timedelta(minutes=3))
            order_line(site, sku, at, order_id=f"{site_index}-{index}")
            record(count(site, sku, at + dt.timedelta(minutes=5), index % 4))
            deliver(site, at + dt.timedelta(minutes=9), created_at=at, accurate=index % 3 > 0)
            record(move(site, sku, MovementKind.ADJUSTED, at, on_hand=-1))


@pytest.mark.parametrize("per_site", [1, 25])
def test_kpis_cost_a_bounded_number_of_queries_whatever_the_history(
    client, token, django_assert_max_num_queries, per_site
):
    # given a small or a larger history (the query count must not grow with it)
    _history(sites=3, per_site=per_site)
    # PostgreSQL: token, site, the rollups in one round trip, the percentiles' delivery rows.
    # Elsewhere the rollup statements go one by one.
    bound = 4 if connection.vendor == "postgresql" else 8

    for window in ("1h", "24h", "7d", "30d"):
        for scope in ("", "&site=q1"):
            with django_assert_max_num_queries(bound):
                response = client.get(f"/api/kpis?window={window}{scope}", **_bearer(token))
            assert response.status_code == 200
            if window == "30d" and not scope:
                # every delivery but the first of each site (9 minutes ahead of now) is inside
                assert response.json()["deliveries"] == 3 * (per_site - 1)


def test_stock_lists_levels_ordered_and_paged(client, token):
    north, south = site_make("north"), site_make("south")
    a, b = sku_make("A"), sku_make("B")
    now = dt.datetime.now(dt.UTC)
    receive(south, b, 3, now)
    receive(north, b, 1, now)
    record(move(north, a, MovementKind.ORDER_RESERVED, now, reserved=2))

    body = client.get("/api/stock", **_bearer(token)).json()

    assert body == {
        "count": 3,
        "items": [
            {"site": "north", "sku": "A", "on_hand": 0, "reserved": 2, "available": -2},
            {"site": "north", "sku": "B", "on_hand": 1, "reserved": 0, "available": 1},
            {"site": "south", "sku": "B", "on_hand": 3, "reserved": 0, "available": 3},
        ],
    }
    page = client.get("/api/stock?site=north&limit=1&offset=1", **_bearer(token)).json()
    assert page == {"count": 2, "items": [body["items"][1]]}
    one = client.get("/api/stock?site=south&sku=B", **_bearer(token)).json()
    assert one["items"] == [body["items"][2]]


@pytest.mark.parametrize(
    ("path", "status", "says"),
    [
        ("kpis?window=2h", 400, "window must be one of 1h, 24h, 7d, 30d"),
        ("kpis?site=nowhere", 404, "no site with code 'nowhere'"),
        ("stock?limit=10001", 400, "limit must be 0 to 10000"),
        ("stock?limit=ten", 400, "limit must be a whole number"),
        ("stock?offset=-1", 400, "offset must be 0 to 1000000000000; got -1"),
        ("stock?offset=99999999999999999999", 400, "offset must be 0 to 1000000000000"),
        ("stock?offset=9223372036854775807", 400, "offset must be 0 to 1000000000000"),
        ("stock?limit=99999999999999999999", 400, "limit must be 0 to 10000"),
        ("stock?offset=" + "9" * 5000, 400, "offset must be a whole number"),
        ("stock?site=nowhere", 404, "no site with code 'nowhere'"),
        ("stock?sku=nothing", 404, "no SKU with code 'nothing'"),
    ],
)
def test_bad_arguments_say_what_to_fix(client, token, path, status, says):
    response = client.get(f"/api/{path}", **_bearer(token))

    assert response.status_code == status
    assert says in response.json()["detail"]


def test_stock_needs_a_session_or_a_feed_token(client):
    assert client.get("/api/stock").status_code == 401
    client.force_login(user_make())
    assert client.get("/api/stock").json() == {"count": 0, "items": []}
