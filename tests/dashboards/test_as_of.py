"""`as_of` on `/api/kpis` and `/api/stock`, hand-computed: an instant before any movement,
instants inside a minute, a late movement that changes the past, a count at the time it was
applied, negative and below-reorder pairs, the 30-day demand look-back ending at `as_of`, and
every bad `as_of` answered with a JSON 400.

The story (H0 a whole hour 32 days ago; SKU A costs 2.50, reorder point 5; SKU B costs 1.00,
reorder point 3), recorded in this order:
  H0+10m        receive 10 A
  H0+70m20s     reserve 4 A (an order line), H0+70m40s dispatch 4 A
  H0+71m        delivery (accurate, 5.00), created H0+70m20s
  H0+2h05m      count A: 5 (on hand 6 when applied: -1, a mismatch)
  H0+2h10m      snapshot {A: 5}
  H0+30m        receive 3 A (late: recorded last)
  H0+90m        adjust B by -2; H0+95m reserve 1 B (an order line)
"""

import datetime as dt
import io
from decimal import Decimal
from importlib import import_module
from urllib.parse import quote

import pytest
from django.apps import apps
from django.core.management import call_command
from django.utils import timezone

from kpis.models import StockCheckpoint
from ledger.models import MovementKind
from tests.builders import site_make, sku_make, user_make
from tests.dashboards.kpi_helpers import (
    count,
    deliver,
    move,
    order_line,
    receive,
    record,
    ship,
    snapshot,
)

pytestmark = pytest.mark.django_db
MINUTE = dt.timedelta(minutes=1)
SECOND = dt.timedelta(seconds=1)


@pytest.fixture
def story():
    h0 = timezone.now().replace(minute=0, second=0, microsecond=0) - dt.timedelta(days=32)
    north = site_make("north")
    a = sku_make("A", unit_cost="2.50", reorder_point=5)
    b = sku_make("B", unit_cost="1.00", reorder_point=3)
    at = lambda minutes, seconds=0: h0 + dt.timedelta(minutes=minutes, seconds=seconds)  # noqa: E731
    receive(north, a, 10, at(10))
    ship(north, a, 4, reserved_at=at(70, 20), dispatched_at=at(70, 40))
    order_line(north, a, at(70, 20), qty=4)
    deliver(north, at(71), accurate=True, cost="5.00", created_at=at(70, 20))
    record(count(north, a, at(125), counted=5))
    snapshot(north, at(130), {a: 5})
    receive(north, a, 3, at(30))  # late
    record(move(north, b, MovementKind.ADJUSTED, at(90), on_hand=-2))
    record(move(north, b, MovementKind.ORDER_RESERVED, at(95), reserved=1))
    order_line(north, b, at(95), qty=1)
    return h0, at


@pytest.fixture
def reader(client):
    client.force_login(user_make())
    return client


def _kpis(reader, as_of: dt.datetime | str, **params) -> dict:
    text = as_of if isinstance(as_of, str) else as_of.isoformat()
    query = "&".join(f"{key}={value}" for key, value in params.items())
    response = reader.get(f"/api/kpis?as_of={quote(text)}&{query}")
    assert response.status_code == 200, response.content
    return response.json()


def _stock(reader, as_of: dt.datetime, **params) -> dict:
    query = "&".join(f"{key}={value}" for key, value in params.items())
    response = reader.get(f"/api/stock?as_of={quote(as_of.isoformat())}&{query}")
    assert response.status_code == 200, response.content
    return response.json()


def test_before_any_movement_nothing_was_in_stock_and_nothing_was_measured(story, reader):
    h0, _at = story

    stock = _stock(reader, h0 - SECOND)
    kpis = _kpis(reader, h0 - SECOND, site="north", window="30d")

    assert stock == {"count": 0, "items": []}
    assert kpis["deliveries"] == 0
    assert kpis["counts"] == 0
    assert kpis["inventory_turnover"] is None  # no value at either end
    assert kpis["stockouts"] == kpis["negative_stock"] == kpis["below_reorder_point"] == 0
    assert kpis["reconciliation_skew"] is None
    assert "feeds" not in kpis


def test_inside_a_minute_the_reservation_counts_and_the_dispatch_after_it_does_not(story, reader):
    _h0, at = story
    # 10 s after the reservation, 10 s before the dispatch, in the same minute; the late
    # receipt at H0+30m is in the past of this instant
    instant = at(70, 30)

    stock = _stock(reader, instant, site="north")

    assert stock == {
        "count": 1,
        "items": [{"site": "north", "sku": "A", "on_hand": 13, "reserved": 4, "available": 9}],
    }


def test_the_offset_given_is_echoed_and_means_the_same_instant(story, reader):
    _h0, at = story
    given = at(71).astimezone(dt.timezone(dt.timedelta(hours=-5))).isoformat()

    kpis = _kpis(reader, given, site="north", window="1h")

    assert kpis["as_of"] == given
    # the window (H0+11m, H0+71m]: the dispatch (COGS 4 x 2.50) and the delivery at its end
    assert kpis["deliveries"] == 1
    assert kpis["order_accuracy"] == 1.0
    assert kpis["cost_per_shipment"] == 5.0
    assert kpis["fulfillment_p50_s"] == 40.0
    # value at H0+11m: 10 x 2.50 = 25.00; at H0+71m: (10 + 3 - 4) x 2.50 = 22.50
    expected = Decimal(10) / ((Decimal(25) + Decimal("22.5")) / 2) * 365 * 24
    assert kpis["inventory_turnover"] == pytest.approx(float(expected))


def test_a_count_takes_the_difference_it_made_when_applied(story, reader):
    _h0, at = story

    kpis = _kpis(reader, at(125, 1), site="north", window="1h")
    stock = _stock(reader, at(125, 1), sku="A")

    # the count found 6 and set 5 (-1); the late receipt of 3 came after it: 13 - 4 - 1
    assert stock["items"][0]["on_hand"] == 8
    assert (kpis["counts"], kpis["stock_mismatch_rate"], kpis["mismatch_units"]) == (1, 1.0, 1)
    assert kpis["mismatch_value"] == 2.5


def test_the_snapshot_is_compared_with_the_level_at_as_of(story, reader):
    _h0, at = story

    kpis = _kpis(reader, at(130), site="north")

    # the snapshot said 5; the level at H0+2h10m is 8 (the late receipt included)
    assert kpis["reconciliation_skew"] == 1.0


def test_negative_and_below_reorder_pairs_have_a_level_only_from_their_first_movement(
    story, reader
):
    _h0, at = story

    before = _kpis(reader, at(89, 59), site="north")
    after = _kpis(reader, at(90), site="north")

    assert (before["negative_stock"], before["below_reorder_point"]) == (0, 0)
    # B: on hand -2 (negative), available -2 < 3 (below); A: available 9, not below 5
    assert (after["negative_stock"], after["below_reorder_point"]) == (1, 1)
    assert after["stockouts"] == 0  # B has had no demand yet


def test_the_stockout_look_back_ends_at_as_of(story, reader):
    _h0, at = story
    thirty_days = dt.timedelta(days=30)

    with_demand = _kpis(reader, at(95), site="north")
    last_moment = _kpis(reader, at(95) + thirty_days - SECOND, site="north")
    demand_aged_out = _kpis(reader, at(95) + thirty_days, site="north")

    assert with_demand["stockouts"] == 1  # B: available -3, an order line at H0+95m
    assert last_moment["stockouts"] == 1
    assert demand_aged_out["stockouts"] == 0


def test_windows_end_at_as_of_for_all_sites_too(story, reader):
    _h0, at = story
    south = site_make("south")
    receive(south, sku_make("C", unit_cost="1.00"), 7, at(71))

    kpis = _kpis(reader, at(71), window="1h")
    stock = _stock(reader, at(71))

    assert kpis["site"] is None
    assert kpis["deliveries"] == 1
    assert [(item["site"], item["sku"], item["on_hand"]) for item in stock["items"]] == [
        ("north", "A", 9),
        ("south", "C", 7),
    ]


def test_stock_at_as_of_is_paged_like_stock_now(story, reader):
    _h0, at = story

    page = _stock(reader, at(95), limit=1, offset=1)

    assert page["count"] == 2
    assert page["items"] == [
        {"site": "north", "sku": "B", "on_hand": -2, "reserved": 1, "available": -3}
    ]


def test_rebuilt_checkpoints_give_the_same_answers(story, reader):
    _h0, at = story
    instants = [at(70, 30), at(71), at(125, 1), at(130), at(95)]
    before = [_stock(reader, moment) for moment in instants]
    checkpoints = sorted(
        StockCheckpoint.objects.values_list("site_id", "sku_id", "at", "on_hand", "reserved")
    )

    call_command("rebuild_kpis", stdout=io.StringIO())

    assert (
        sorted(
            StockCheckpoint.objects.values_list("site_id", "sku_id", "at", "on_hand", "reserved")
        )
        == checkpoints
    )
    assert [_stock(reader, moment) for moment in instants] == before


@pytest.mark.parametrize(
    ("as_of", "says"),
    [
        ("2026-03-01T14:05:00", "needs a UTC offset"),
        ("yesterday", "ISO 8601"),
        ("2026-13-01T00:00:00Z", "ISO 8601"),
        ("1800-01-01T00:00:00Z", "on or after"),
    ],
)
@pytest.mark.parametrize("endpoint", ["/api/kpis", "/api/stock"])
def test_a_bad_as_of_is_a_json_400_saying_what_to_fix(reader, endpoint, as_of, says):
    response = reader.get(f"{endpoint}?as_of={quote(as_of)}")

    assert response.status_code == 400
    assert says in response.json()["detail"]


@pytest.mark.parametrize("endpoint", ["/api/kpis", "/api/stock"])
def test_as_of_in_the_future_is_refused(reader, endpoint):
    later = (timezone.now() + dt.timedelta(minutes=5)).isoformat()

    response = reader.get(f"{endpoint}?as_of={quote(later)}")

    assert response.status_code == 400
    assert "future" in response.json()["detail"]


def test_an_unencoded_plus_of_the_offset_still_reads(story, reader):
    _h0, at = story
    given = at(71).astimezone(dt.timezone(dt.timedelta(hours=2))).isoformat()

    response = reader.get(f"/api/stock?as_of={given}&site=north")  # '+' arrives as a space

    assert response.status_code == 200
    assert response.json()["items"][0]["on_hand"] == 9


def test_the_migration_fills_the_checkpoints_the_writers_keep(story):
    # given the checkpoints the writers kept, late receipt included
    kept = sorted(
        StockCheckpoint.objects.values_list("site_id", "sku_id", "at", "on_hand", "reserved")
    )
    StockCheckpoint.objects.all().delete()

    # when the migration that added them fills them from the ledger
    import_module("kpis.migrations.0011_stock_checkpoints").checkpoints_fill(apps, None)

    # then it writes the same rows
    assert (
        sorted(
            StockCheckpoint.objects.values_list("site_id", "sku_id", "at", "on_hand", "reserved")
        )
        == kept
    )
