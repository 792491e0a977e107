"""`GET /api/restock`: every field computed by hand, the edge cases, order, paging, access,
errors; the demand rollup kept by the writers and by `rebuild_kpis`."""

import datetime as dt
import json
import random

import pytest
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone

from ingest.sources import feed_source_create
from kpis.demand import demand_28d
from kpis.models import DemandBucket
from ledger.models import MovementKind, SiteReorderPoint
from tests.builders import site_make, sku_make, user_make
from tests.dashboards.kpi_helpers import move, receive, record

pytestmark = pytest.mark.django_db

DAY = dt.timedelta(days=1)


@pytest.fixture
def token():
    return feed_source_create(name="wms").token


def _bearer(token: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def dispatched(site, sku, qty: int, at: dt.datetime):
    record(move(site, sku, MovementKind.ORDER_DISPATCHED, at, on_hand=-qty))


def returned(site, sku, qty: int, at: dt.datetime):
    record(move(site, sku, MovementKind.ORDER_RETURNED, at, on_hand=qty))


def reserve(site, sku, qty: int, at: dt.datetime):
    record(move(site, sku, MovementKind.ORDER_RESERVED, at, reserved=qty))


def _items(client, token, query: str = "") -> dict:
    response = client.get(f"/api/restock{query}", **_bearer(token))
    assert response.status_code == 200, response.content
    return response.json()


def test_every_field_of_a_pair_below_its_lead_time(client, token):
    # Given 86 received, 56 dispatched and 14 returned in the last 28 days: demand 42,
    # 1.5 a day, 44 available -> 29.33 days of cover: not urgent by cover. A reorder point
    # of 50 makes it need restocking: ceil(1.5 * 14) + 50 - 44 = 21 + 6 = 27.
    north, a = site_make("north"), sku_make("A", reorder_point=50)
    now = timezone.now()
    receive(north, a, 86, now - 30 * DAY)
    dispatched(north, a, 56, now - 10 * DAY)
    returned(north, a, 14, now - 2 * DAY)

    body = _items(client, token)

    assert body == {
        "count": 1,
        "items": [
            {
                "site": "north",
                "sku": "A",
                "available": 44,
                "reorder_point": 50,
                "demand_28d": 42,
                "daily_demand": 1.5,
                "days_of_cover": 44 / 1.5,
                "needs_restock": True,
                "suggested_qty": 27,
            }
        ],
    }


def test_cover_below_the_lead_time_needs_restocking_and_ceil_rounds_up(client, token):
    # 10 dispatched in 28 days: 10/28 a day; 1 available -> 2.8 days of cover < 3.
    # suggested: ceil(10/28 * 14) = ceil(5.0) = 5, no reorder point: 5 - 1 = 4.
    # 11 dispatched at the other SKU: ceil(11/28 * 14) = ceil(5.5) = 6; 1 available -> 5.
    north, a, b = site_make("north"), sku_make("A"), sku_make("B")
    now = timezone.now()
    for sku, qty in ((a, 10), (b, 11)):
        receive(north, sku, qty + 1, now - 20 * DAY)
        dispatched(north, sku, qty, now - DAY)

    items = _items(client, token)["items"]

    assert [(item["sku"], item["days_of_cover"], item["suggested_qty"]) for item in items] == [
        ("B", pytest.approx(28 / 11), 5 + 1 - 1),
        ("A", pytest.approx(2.8), 4),
    ]
    assert items[0]["reorder_point"] is None
    assert items[1]["daily_demand"] == pytest.approx(10 / 28)


def test_no_demand_gives_null_cover_and_sorts_last(client, token):
    north, a, b = site_make("north"), sku_make("A", reorder_point=5), sku_make("B")
    now = timezone.now()
    receive(north, a, 2, now - DAY)  # below its reorder point, never dispatched
    receive(north, b, 3, now - 5 * DAY)
    dispatched(north, b, 3, now - DAY)  # nothing left: 0 days of cover

    items = _items(client, token)["items"]

    assert [item["sku"] for item in items] == ["B", "A"]
    assert items[1] == {
        "site": "north",
        "sku": "A",
        "available": 2,
        "reorder_point": 5,
        "demand_28d": 0,
        "daily_demand": 0.0,
        "days_of_cover": None,
        "needs_restock": True,
        "suggested_qty": 3,  # ceil(0) + 5 - 2
    }
    assert items[0]["days_of_cover"] == 0.0
    assert items[0]["suggested_qty"] == 2  # ceil(3/28 * 14) = 2, + 0 - 0


def test_zero_available_without_demand_or_reorder_point_is_not_listed(client, token):
    north, a = site_make("north"), sku_make("A")
    reserve(north, a, 0 + 4, timezone.now())  # a level, available -4, nobody ever shipped it

    assert _items(client, token) == {"count": 0, "items": []}


def test_reserved_units_are_not_available(client, token):
    # 28 dispatched: 1 a day; 5 on hand with 4 reserved -> 1 available, 1 day of cover.
    north, a = site_make("north"), sku_make("A")
    now = timezone.now()
    receive(north, a, 33, now - 10 * DAY)
    dispatched(north, a, 28, now - 3 * DAY)
    reserve(north, a, 4, now - DAY)

    (item,) = _items(client, token)["items"]

    assert (item["available"], item["days_of_cover"], item["suggested_qty"]) == (1, 1.0, 13)


def test_returns_exceeding_dispatches_floor_demand_at_zero(client, token):
    north, a = site_make("north"), sku_make("A", reorder_point=10)
    now = timezone.now()
    receive(north, a, 1, now - 40 * DAY)
    dispatched(north, a, 2, now - 3 * DAY)
    returned(north, a, 9, now - DAY)

    (item,) = _items(client, token)["items"]

    assert item["demand_28d"] == 0
    assert item["daily_demand"] == 0.0
    assert item["days_of_cover"] is None
    assert item["suggested_qty"] == 10 - 8  # reorder point less the 8 available


def test_only_the_28_days_ending_now_count_by_event_time(client, token):
    # A dispatch 28 days and 10 minutes ago is outside; one 27 days 23 h 50 min ago inside.
    # A late event (recorded now, dated 5 days ago) counts; one dated tomorrow does not.
    north, a = site_make("north"), sku_make("A")
    now = timezone.now()
    receive(north, a, 1000, now - 60 * DAY)
    dispatched(north, a, 500, now - 28 * DAY - dt.timedelta(minutes=10))
    dispatched(north, a, 14, now - 28 * DAY + dt.timedelta(minutes=10))
    dispatched(north, a, 100, now + DAY)
    dispatched(north, a, 370, now - 5 * DAY)  # 16 left

    (item,) = _items(client, token)["items"]

    assert item["demand_28d"] == 14 + 370
    assert item["available"] == 16
    assert item["days_of_cover"] == pytest.approx(16 / (384 / 28))


def test_site_overrides_of_lead_and_target_days(client, token):
    # 28 dispatched: 1 a day; 5 available: 5 days of cover. With the defaults (3, 14) it is
    # fine; north's lead time of 7 days makes it urgent, its target of 20 days orders 15.
    north, south, a = site_make("north"), site_make("south"), sku_make("A")
    now = timezone.now()
    for site in (north, south):
        receive(site, a, 33, now - 10 * DAY)
        dispatched(site, a, 28, now - 2 * DAY)
    assert _items(client, token)["count"] == 0

    north.restock_lead_days, north.restock_target_days = 7, 20
    north.save()

    assert [(i["site"], i["suggested_qty"]) for i in _items(client, token)["items"]] == [
        ("north", 15)
    ]
    with override_settings(RESTOCK_LEAD_DAYS=6, RESTOCK_TARGET_DAYS=10):
        assert [(i["site"], i["suggested_qty"]) for i in _items(client, token)["items"]] == [
            ("north", 15),
            ("south", 5),
        ]


def test_a_site_reorder_point_overrides_the_skus(client, token):
    north, south, a = site_make("north"), site_make("south"), sku_make("A", reorder_point=1)
    now = timezone.now()
    for site in (north, south):
        receive(site, a, 5, now - DAY)
    SiteReorderPoint.objects.create(site=north, sku=a, reorder_point=8)

    (item,) = _items(client, token)["items"]

    assert (item["site"], item["reorder_point"], item["suggested_qty"]) == ("north", 8, 3)


def test_order_site_filter_and_paging(client, token):
    # Equal cover ties break on site, then SKU; no demand comes last.
    north, south = site_make("north"), site_make("south")
    a, b, c = sku_make("A"), sku_make("B"), sku_make("C", reorder_point=3)
    now = timezone.now()
    for site in (south, north):
        for sku in (b, a):
            receive(site, sku, 29, now - 9 * DAY)
            dispatched(site, sku, 28, now - DAY)  # 1 left, 1 a day: 1 day of cover
    receive(north, c, 1, now - DAY)

    body = _items(client, token)

    pairs = [(item["site"], item["sku"]) for item in body["items"]]
    assert pairs == [
        ("north", "A"),
        ("north", "B"),
        ("south", "A"),
        ("south", "B"),
        ("north", "C"),
    ]
    assert body["count"] == 5
    page = _items(client, token, "?limit=2&offset=1")
    assert page == {"count": 5, "items": body["items"][1:3]}
    north_only = _items(client, token, "?site=north")
    assert north_only["count"] == 3
    assert north_only["items"] == [body["items"][i] for i in (0, 1, 4)]


@pytest.mark.parametrize(
    ("query", "status", "says"),
    [
        ("?site=nowhere", 404, "no site with code 'nowhere'"),
        ("?limit=10001", 400, "limit must be 0 to 10000"),
        ("?limit=ten", 400, "limit must be a whole number"),
        ("?offset=-1", 400, "offset must be 0 to 1000000000000; got -1"),
    ],
)
def test_bad_arguments_say_what_to_fix(client, token, query, status, says):
    response = client.get(f"/api/restock{query}", **_bearer(token))

    assert response.status_code == status
    assert says in response.json()["detail"]


def test_restock_needs_a_session_or_a_feed_token(client):
    response = client.get("/api/restock")
    assert response.status_code == 401
    assert "Bearer" in response.json()["detail"]
    client.force_login(user_make())
    assert client.get("/api/restock").json() == {"count": 0, "items": []}


def test_the_openapi_document_describes_restock(client):
    document = client.get("/api/openapi.json").json()

    operation = document["paths"]["/api/restock"]["get"]
    schema_ref = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    answer = document["components"]["schemas"][schema_ref.rsplit("/", 1)[1]]
    item_ref = answer["properties"]["items"]["items"]["$ref"]
    item = document["components"]["schemas"][item_ref.rsplit("/", 1)[1]]
    assert set(item["properties"]) == {
        "site",
        "sku",
        "available",
        "reorder_point",
        "demand_28d",
        "daily_demand",
        "days_of_cover",
        "needs_restock",
        "suggested_qty",
    }
    assert {parameter["name"] for parameter in operation["parameters"]} == {
        "site",
        "limit",
        "offset",
    }


# --- the demand rollup ----------------------------------------------------------------------


def _reference_demand(movements, now) -> dict:
    """Net demand per pair straight from the movements: the plain definition."""
    net: dict = {}
    for site_id, sku_id, delta, at in movements:
        if now - dt.timedelta(days=28) < at <= now:
            net[(site_id, sku_id)] = net.get((site_id, sku_id), 0) - delta
    return net


@pytest.mark.parametrize("minute_of_hour", [0, 7, 29, 31, 59])
def test_demand_equals_the_movements_at_every_edge(minute_of_hour):
    # Movements scattered around both ends of the window, with `now` early and late in its
    # hour (the window's head hour is read from its bucket or from its movements).
    north, south = site_make("north"), site_make("south")
    a, b = sku_make("A"), sku_make("B")
    now = timezone.now().replace(minute=minute_of_hour, second=13, microsecond=500)
    generator = random.Random(minute_of_hour)
    written = []
    for _ in range(120):
        site, sku = generator.choice([north, south]), generator.choice([a, b])
        anchor = generator.choice([now - dt.timedelta(days=28), now, now - 3 * DAY])
        at = anchor + dt.timedelta(seconds=generator.randint(-5400, 5400))
        kind = generator.choice([MovementKind.ORDER_DISPATCHED, MovementKind.ORDER_RETURNED])
        qty = generator.randint(1, 9)
        delta = -qty if kind == MovementKind.ORDER_DISPATCHED else qty
        record(move(site, sku, kind, at, on_hand=delta))
        written.append((site.id, sku.id, delta, at))
    for edge in (now - dt.timedelta(days=28), now):  # exactly at the ends: out, then in
        record(move(north, a, MovementKind.ORDER_DISPATCHED, edge, on_hand=-1))
        written.append((north.id, a.id, -1, edge))

    expected = _reference_demand(written, now)

    assert {k: v for k, v in demand_28d(site_id=None, now=now).items() if v} == {
        k: v for k, v in expected.items() if v
    }
    north_only = {k: v for k, v in demand_28d(site_id=north.id, now=now).items() if v}
    assert north_only == {k: v for k, v in expected.items() if v and k[0] == north.id}


def _demand_buckets() -> dict:
    """(site, SKU, span, start) -> (dispatched, returned), summed over the writers' shards."""
    sums: dict = {}
    for row in DemandBucket.objects.all():
        key = (row.site_id, row.sku_id, row.span_s, row.start)
        dispatched_so_far, returned_so_far = sums.get(key, (0, 0))
        sums[key] = (dispatched_so_far + row.dispatched, returned_so_far + row.returned)
    return sums


def test_rebuild_kpis_writes_the_same_demand_buckets(client, token):
    north, a = site_make("north"), sku_make("A", reorder_point=20)
    now = timezone.now()
    receive(north, a, 50, now - 30 * DAY)
    dispatched(north, a, 30, now - 3 * DAY)
    returned(north, a, 2, now - 3 * DAY)
    dispatched(north, a, 7, now - DAY)
    kept = _items(client, token)
    sums = _demand_buckets()
    DemandBucket.objects.all().delete()

    call_command("rebuild_kpis", stdout=open("/dev/null", "w"))  # noqa: SIM115

    assert _demand_buckets() == sums
    assert len(sums) == 2 * 2  # an hour and a day bucket for each of two days
    assert _items(client, token) == kept
    assert kept["items"][0]["demand_28d"] == 35


def test_a_read_costs_the_same_queries_whatever_the_history(
    client, token, django_assert_max_num_queries
):
    # 135 dispatched over 27 days, 365 left, below a reorder point of 400.
    north, a = site_make("north"), sku_make("A", reorder_point=400)
    now = timezone.now()
    receive(north, a, 500, now - 30 * DAY)
    for day in range(1, 28):
        dispatched(north, a, 5, now - day * DAY)

    with django_assert_max_num_queries(6):
        (item,) = _items(client, token)["items"]
    assert (item["demand_28d"], item["available"]) == (135, 365)


def test_the_example_in_the_docs_is_what_the_api_answers(client, token):
    # docs/restocking.md, "Example": built as it tells it, answered as it shows it.
    from django.conf import settings

    text = (settings.BASE_DIR / "docs" / "restocking.md").read_text()
    shown = json.loads(text.split('/api/restock?site=ams"\n', 1)[1].split("```", 1)[0])
    ams = site_make("ams", restock_lead_days=7)
    tea, jam, oat = sku_make("TEA"), sku_make("JAM", reorder_point=6), sku_make("OAT")
    now = timezone.now()
    receive(ams, tea, 52, now - 30 * DAY)  # 52 - 56 + 14 = 10 on hand
    dispatched(ams, tea, 56, now - 9 * DAY)
    returned(ams, tea, 14, now - 4 * DAY)
    reserve(ams, tea, 2, now - DAY)
    receive(ams, jam, 4, now - DAY)
    receive(ams, oat, 528, now - 20 * DAY)
    dispatched(ams, oat, 28, now - 2 * DAY)

    assert _items(client, token, "?site=ams") == shown
