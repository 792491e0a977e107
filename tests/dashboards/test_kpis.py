"""Every KPI of docs/kpis.md, hand-computed from its formula, including each null case."""

import datetime as dt
from decimal import Decimal

import numpy
import pytest
from django.core.management import call_command

from kpis.reads import inventory_value_at, kpis_compute
from kpis.trends import kpi_trends_compute
from kpis.windows import WINDOWS
from ledger.exceptions import UnknownSite
from ledger.models import MovementKind, SiteReorderPoint
from tests.builders import site_make, sku_make
from tests.dashboards.kpi_helpers import (
    count,
    deliver,
    move,
    now_mid_minute,
    order_line,
    receive,
    record,
    ship,
    snapshot,
)

pytestmark = pytest.mark.django_db
MINUTE = dt.timedelta(minutes=1)
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)


def test_empty_history_gives_the_null_cases_and_zero_counts():
    # given a site with no facts at all
    site_make("empty")
    now = now_mid_minute()

    # when
    kpis = kpis_compute(site="empty", window="24h", now=now)

    # then every ratio is null and every count zero
    assert kpis == {
        "as_of": now.isoformat(),
        "site": "empty",
        "window": "24h",
        "inventory_turnover": None,
        "order_accuracy": None,
        "deliveries": 0,
        "stock_mismatch_rate": None,
        "counts": 0,
        "mismatch_units": 0,
        "mismatch_value": 0.0,
        "cost_per_shipment": None,
        "fulfillment_p50_s": None,
        "fulfillment_p90_s": None,
        "stockouts": 0,
        "negative_stock": 0,
        "below_reorder_point": 0,
        "reconciliation_skew": None,
        "reconciliation_skew_units": None,
        "feeds": [],
    }


def test_turnover_from_cogs_and_value_at_both_ends_of_the_window():
    # given 100 units at 2.50 received before the hour, 10 dispatched and 2 returned within it
    site, sku = site_make("a"), sku_make("X", unit_cost="2.50")
    now = now_mid_minute()
    receive(site, sku, 100, now - 2 * HOUR)
    ship(site, sku, 10, now - 40 * MINUTE, now - 30 * MINUTE)
    record(move(site, sku, MovementKind.ORDER_RETURNED, now - 10 * MINUTE, on_hand=2))

    # when
    kpis = kpis_compute(site="a", window="1h", now=now)

    # then COGS = 10*2.50 - 2*2.50 = 20; V_start = 250, V_end = 92*2.50 = 230
    expected = Decimal(20) / ((Decimal(250) + Decimal(230)) / 2) * Decimal(365 * 24)
    assert kpis["inventory_turnover"] == float(expected)
    assert inventory_value_at(site="a", at=now - HOUR) == Decimal("250")
    assert inventory_value_at(site="a", at=now) == Decimal("230")
    assert inventory_value_at(at=now - 3 * HOUR) == Decimal("0")


def test_turnover_is_null_when_the_average_value_is_zero():
    # given stock received and fully dispatched before the window
    site, sku = site_make("a"), sku_make("X")
    now = now_mid_minute()
    receive(site, sku, 5, now - 2 * DAY)
    ship(site, sku, 5, now - 3 * HOUR, now - 2 * HOUR)

    assert kpis_compute(site="a", window="1h", now=now)["inventory_turnover"] is None
    # nor over 7 days: nothing held at either end
    assert kpis_compute(site="a", window="7d", now=now)["inventory_turnover"] is None
    # and over 24h the dispatch is inside, the average value (12.50 + 0) / 2 is not zero
    expected = Decimal("12.50") / (Decimal("12.50") / 2) * 365
    assert kpis_compute(site="a", window="24h", now=now)["inventory_turnover"] == float(expected)


def test_accuracy_and_cost_per_shipment_count_deliveries_in_the_window_only():
    # given three deliveries in the last hour and one before it
    site = site_make("a")
    now = now_mid_minute()
    deliver(site, now - 50 * MINUTE, accurate=True, cost="4.10")
    deliver(site, now - 20 * MINUTE, accurate=True, cost="5.00")
    deliver(site, now - 10 * MINUTE, accurate=False, cost="0.90")
    deliver(site, now - 2 * HOUR, accurate=False, cost="100")

    kpis = kpis_compute(site="a", window="1h", now=now)

    assert kpis["deliveries"] == 3
    assert kpis["order_accuracy"] == float(Decimal(2) / Decimal(3))
    assert kpis["cost_per_shipment"] == float(Decimal("10.00") / 3)
    kpis_day = kpis_compute(site="a", window="24h", now=now)
    assert kpis_day["deliveries"] == 4
    assert kpis_day["order_accuracy"] == 0.5
    assert kpis_day["cost_per_shipment"] == 27.5


def test_window_edges_are_exact_to_the_microsecond():
    # given deliveries just inside and just outside both ends of the hour
    site = site_make("a")
    now = now_mid_minute()
    deliver(site, now - HOUR, cost="1")  # at the start instant: outside (now - W, now]
    deliver(site, now - HOUR + dt.timedelta(microseconds=1), cost="2")
    deliver(site, now, cost="4")  # at now: inside
    deliver(site, now + dt.timedelta(microseconds=1), cost="8")  # after now: outside

    kpis = kpis_compute(site="a", window="1h", now=now)

    assert kpis["deliveries"] == 2
    assert kpis["cost_per_shipment"] == 3.0


def test_facts_of_the_minute_holding_now_count_up_to_now_and_not_after():
    # given 100 on hand at 2.00; in the minute holding `now`, before it: a dispatch of 5, a count
    # that finds 5 missing and a delivery; after it (events dated a few seconds in the future):
    # the same again, which must not count yet
    site, sku = site_make("a"), sku_make("X", unit_cost="2.00")
    now = now_mid_minute()
    before, after = now - dt.timedelta(seconds=10), now + dt.timedelta(seconds=10)
    receive(site, sku, 100, now - 2 * HOUR)
    ship(site, sku, 5, reserved_at=before, dispatched_at=before)
    record(count(site, sku, before, 90))
    deliver(site, before, cost="3.00")
    ship(site, sku, 7, reserved_at=after, dispatched_at=after)
    record(count(site, sku, after, 70))
    deliver(site, after, accurate=False, cost="100.00")

    kpis = kpis_compute(site="a", window="1h", now=now)

    # then the window holds only what happened up to now
    assert (kpis["deliveries"], kpis["order_accuracy"], kpis["cost_per_shipment"]) == (1, 1.0, 3.0)
    assert (kpis["counts"], kpis["mismatch_units"], kpis["mismatch_value"]) == (1, 5, 10.0)
    # COGS 5 x 2.00; value 200.00 at the start, 90 x 2.00 at now
    assert kpis["inventory_turnover"] == float(Decimal(10) / Decimal(190) * Decimal(365 * 24))
    assert inventory_value_at(site="a", at=now) == Decimal("180.00")


def test_a_window_starting_early_in_its_minute_leaves_out_what_came_before_it():
    # given 100 units at 2.50; the standard cost becomes 3.00 at a whole minute (revaluing the
    # stock held), then 10 units leave 5 s into that minute, a count finds 5 missing at 7 s,
    # and 10 more units leave at 20 s
    site, sku = site_make("a"), sku_make("X", unit_cost="2.50")
    effective = now_mid_minute().replace(second=0, microsecond=0) + MINUTE
    receive(site, sku, 100, effective - 2 * HOUR)
    sku.unit_cost = Decimal("3.00")
    sku.save()  # effective from the next whole minute: `effective`
    seconds = dt.timedelta(seconds=1)
    ship(site, sku, 10, effective + 5 * seconds, effective + 5 * seconds)
    record(count(site, sku, effective + 7 * seconds, 85))  # 5 missing, before the window too
    ship(site, sku, 10, effective + 20 * seconds, effective + 20 * seconds)

    # when the hour starts 10 s into that minute (its minute's bucket is read whole, and what
    # came before the start taken out: the revaluation, the first shipment and the count)
    now = effective + HOUR + 10 * seconds
    kpis = kpis_compute(site="a", window="1h", now=now)

    # then: COGS 10 x 3.00; value 85 x 3.00 at the start, 75 x 3.00 at the end
    assert kpis["inventory_turnover"] == float(
        Decimal(30) / ((Decimal(255) + Decimal(225)) / 2) * 365 * 24
    )
    assert (kpis["counts"], kpis["mismatch_units"]) == (0, 0)
    assert inventory_value_at(site="a", at=effective + 10 * seconds) == Decimal("255.00")
    call_command("rebuild_kpis", stdout=open("/dev/null", "w"))  # noqa: SIM115
    assert kpis_compute(site="a", window="1h", now=now) == kpis


def test_stock_mismatch_rate_units_and_value():
    # given 10 on hand; a count that matches, then one that finds 7 (3 units at 2.50 missing)
    site, other, sku = site_make("a"), site_make("b"), sku_make("X", unit_cost="2.50")
    now = now_mid_minute()
    receive(site, sku, 10, now - 2 * HOUR)
    record(count(site, sku, now - 20 * MINUTE, 10))
    record(count(site, sku, now - 10 * MINUTE, 7))
    record(count(other, sku, now - 5 * MINUTE, 4))  # nothing there: 4 found

    kpis = kpis_compute(site="a", window="1h", now=now)

    assert (kpis["counts"], kpis["stock_mismatch_rate"]) == (2, 0.5)
    assert (kpis["mismatch_units"], kpis["mismatch_value"]) == (3, 7.5)
    everywhere = kpis_compute(window="1h", now=now)
    assert everywhere["counts"] == 3
    assert everywhere["stock_mismatch_rate"] == float(Decimal(2) / 3)
    assert (everywhere["mismatch_units"], everywhere["mismatch_value"]) == (7, 17.5)


def test_fulfillment_percentiles_interpolate_like_numpy():
    # given four deliveries whose creation is known, and one whose creation is not
    site = site_make("a")
    now = now_mid_minute()
    durations = [60, 600, 120, 180.5]
    for index, seconds in enumerate(durations):
        delivered = now - (index + 1) * MINUTE
        deliver(site, delivered, created_at=delivered - dt.timedelta(seconds=seconds))
    deliver(site, now - 30 * MINUTE, created_at=None)

    kpis = kpis_compute(site="a", window="1h", now=now)

    assert kpis["deliveries"] == 5
    assert kpis["fulfillment_p50_s"] == pytest.approx(numpy.percentile(durations, 50), abs=1e-9)
    assert kpis["fulfillment_p90_s"] == pytest.approx(numpy.percentile(durations, 90), abs=1e-9)
    assert kpis["fulfillment_p50_s"] == 150.25


def test_fulfillment_is_null_when_no_delivered_order_has_a_known_creation():
    site = site_make("a")
    now = now_mid_minute()
    deliver(site, now - MINUTE, created_at=None)

    kpis = kpis_compute(site="a", window="1h", now=now)

    assert kpis["deliveries"] == 1
    assert (kpis["fulfillment_p50_s"], kpis["fulfillment_p90_s"]) == (None, None)


def test_percentiles_over_many_deliveries_across_sites_and_bins():
    # given 300 deliveries over a day at two sites, durations spread over many bins
    first, second = site_make("a"), site_make("b")
    now = now_mid_minute()
    durations = {"a": [], "b": []}
    for index in range(300):
        site = first if index % 3 else second
        seconds = (index * 7919) % 5000 + (index % 10) / 8
        delivered = now - dt.timedelta(minutes=index * 4 + 1)
        deliver(site, delivered, created_at=delivered - dt.timedelta(seconds=seconds))
        if delivered > now - DAY:
            durations[site.code].append(seconds)

    everywhere = durations["a"] + durations["b"]
    for scope, values in [("a", durations["a"]), ("b", durations["b"]), (None, everywhere)]:
        kpis = kpis_compute(site=scope, window="24h", now=now)
        assert kpis["fulfillment_p50_s"] == pytest.approx(numpy.percentile(values, 50), abs=1e-6)
        assert kpis["fulfillment_p90_s"] == pytest.approx(numpy.percentile(values, 90), abs=1e-6)


def test_percentiles_read_from_either_end_of_a_crowded_bin():
    # given 41 deliveries in the last hour whose durations share one histogram bin (with ties),
    # and older ones in the same bin with durations above and below them
    site = site_make("a")
    now = now_mid_minute()
    recent = [3600 + (index % 17) / 4 for index in range(41)]
    for index, seconds in enumerate(recent):
        delivered = now - dt.timedelta(seconds=30 + index * 60)
        deliver(site, delivered, created_at=delivered - dt.timedelta(seconds=seconds))
    older = [3599.5 + index * 3 for index in range(12)]
    for index, seconds in enumerate(older):
        delivered = now - 2 * HOUR - index * MINUTE
        deliver(site, delivered, created_at=delivered - dt.timedelta(seconds=seconds))

    # then p50 (ranks near the bin's bottom) and p90 (near its top) are exact in each window
    for window, values in [("1h", recent), ("24h", recent + older)]:
        for scope in ("a", None):
            kpis = kpis_compute(site=scope, window=window, now=now)
            for key, percent in [("fulfillment_p50_s", 50), ("fulfillment_p90_s", 90)]:
                assert kpis[key] == pytest.approx(numpy.percentile(values, percent), abs=1e-9)


def test_a_late_event_lands_in_its_past_window():
    # given the KPIs of the last hour and day
    site, sku = site_make("a"), sku_make("X", unit_cost="1")
    now = now_mid_minute()
    receive(site, sku, 50, now - 2 * DAY)
    before_hour = kpis_compute(site="a", window="1h", now=now)

    # when a dispatch that happened 20 hours ago, and its delivery, arrive only now
    ship(site, sku, 5, now - 21 * HOUR, now - 20 * HOUR)
    deliver(site, now - 19 * HOUR, created_at=now - 21 * HOUR, cost="3")

    # then the last hour is unchanged, and the day counts them at their event time
    assert kpis_compute(site="a", window="1h", now=now) == before_hour
    day = kpis_compute(site="a", window="24h", now=now)
    assert day["deliveries"] == 1
    assert day["fulfillment_p50_s"] == 2 * 3600
    expected = Decimal(5) / ((Decimal(50) + Decimal(45)) / 2) * 365
    assert day["inventory_turnover"] == float(expected)
    assert inventory_value_at(site="a", at=now - 20 * HOUR - MINUTE) == Decimal(50)


def test_an_order_whose_delivery_came_before_its_creation():
    # given the delivery fact recorded first, the order line after it (ingest held the order)
    site, sku = site_make("a"), sku_make("X")
    now = now_mid_minute()
    created, delivered = now - 30 * MINUTE, now - 5 * MINUTE
    deliver(site, delivered, created_at=created)
    order_line(site, sku, created, qty=2, order_id="o-1")
    record(move(site, sku, MovementKind.ORDER_RESERVED, created, reserved=2))

    kpis = kpis_compute(site="a", window="1h", now=now)

    assert kpis["fulfillment_p50_s"] == 25 * 60
    assert kpis["stockouts"] == 1  # nothing on hand, 2 reserved, ordered recently
    trends = kpi_trends_compute(site="a", window="1h", now=now)
    assert sum(point["value"] for point in trends["orders_per_minute"]) == 1


def test_stockouts_negative_stock_and_below_reorder_point_now():
    site, sku_ordered, sku_stale, sku_low = (
        site_make("a"),
        sku_make("O"),
        sku_make("S"),
        sku_make("L", reorder_point=5),
    )
    now = now_mid_minute()
    # O: available 0 and ordered 10 days ago: a stockout
    record(move(site, sku_ordered, MovementKind.ORDER_RESERVED, now - 10 * DAY, reserved=1))
    order_line(site, sku_ordered, now - 10 * DAY)
    record(move(site, sku_ordered, MovementKind.ORDER_RELEASED, now - 9 * DAY, reserved=-1))
    # S: on hand -2 (a loss recorded past zero), last ordered 40 days ago: negative, no stockout
    record(move(site, sku_stale, MovementKind.ADJUSTED, now - 2 * DAY, on_hand=-2))
    order_line(site, sku_stale, now - 40 * DAY)
    # L: available 3 below the SKU's reorder point 5
    receive(site, sku_low, 3, now - DAY)

    kpis = kpis_compute(site="a", window="1h", now=now)
    assert (kpis["stockouts"], kpis["negative_stock"], kpis["below_reorder_point"]) == (1, 1, 1)

    # when the site's own reorder point for L is 2, L is no longer below it
    override = SiteReorderPoint.objects.create(site=site, sku=sku_low, reorder_point=2)
    assert kpis_compute(site="a", window="1h", now=now)["below_reorder_point"] == 0
    # and when that override goes, and the SKU's default drops to 3, still not below (3 < 3)
    override.delete()
    sku_low.reorder_point = 3
    sku_low.save()
    assert kpis_compute(window="1h", now=now)["below_reorder_point"] == 0
    # the demand window ages by `now`: 21 days later O is no longer a stockout
    assert kpis_compute(window="1h", now=now + 21 * DAY)["stockouts"] == 0


def test_reconciliation_skew_from_the_latest_snapshot_per_site():
    first, second = site_make("a"), site_make("b")
    x, y = sku_make("X"), sku_make("Y")
    now = now_mid_minute()
    receive(first, x, 10, now - DAY)
    receive(first, y, 4, now - DAY)
    # the latest snapshot of a: x agrees, y says 1 (3 units off)
    snapshot(first, now - HOUR, {x: 10, y: 1})
    # an older snapshot applied later does not replace it
    snapshot(first, now - 2 * HOUR, {x: 0, y: 0})
    # b: one line, nothing held there, says 5
    snapshot(second, now - HOUR, {x: 5})

    assert kpis_compute(site="a", window="1h", now=now)["reconciliation_skew"] == 0.5
    assert kpis_compute(site="a", window="1h", now=now)["reconciliation_skew_units"] == 3
    everywhere = kpis_compute(window="1h", now=now)
    assert everywhere["reconciliation_skew"] == float(Decimal(2) / 3)
    assert everywhere["reconciliation_skew_units"] == 8


def test_a_standard_cost_change_revalues_stock_from_the_next_minute():
    # given 100 units at 2.50 received two hours ago
    site, sku = site_make("a"), sku_make("X", unit_cost="2.50")
    moment = now_mid_minute()
    receive(site, sku, 100, moment - 2 * HOUR)

    # when the standard cost becomes 3.00 (effective from the next whole minute)
    sku.unit_cost = Decimal("3.00")
    sku.save()
    effective = moment.replace(second=0, microsecond=0) + MINUTE
    # and later facts arrive: a late receipt from before the change, a dispatch after it
    receive(site, sku, 10, effective - 30 * MINUTE)
    ship(site, sku, 10, effective + MINUTE / 2, effective + MINUTE / 2)
    now = effective + MINUTE + dt.timedelta(seconds=10)

    # then the value before the change is at 2.50, after it at 3.00
    assert inventory_value_at(site="a", at=effective - dt.timedelta(microseconds=1)) == Decimal(
        "275.00"
    )
    assert inventory_value_at(site="a", at=effective) == Decimal("330.00")
    assert inventory_value_at(site="a", at=now) == Decimal("300.00")
    kpis = kpis_compute(site="a", window="1h", now=now)
    expected = Decimal(30) / ((Decimal(250) + Decimal(300)) / 2) * 365 * 24
    assert kpis["inventory_turnover"] == float(expected)
    # and rebuilding from the ledger gives the same
    call_command("rebuild_kpis", stdout=open("/dev/null", "w"))  # noqa: SIM115
    assert kpis_compute(site="a", window="1h", now=now) == kpis
    assert inventory_value_at(site="a", at=effective) == Decimal("330.00")


def test_rebuild_kpis_leaves_the_same_numbers_for_every_window_and_scope(capsys):
    first, second = site_make("a"), site_make("b")
    x, y = sku_make("X", unit_cost="1.25", reorder_point=3), sku_make("Y", unit_cost="7")
    now = now_mid_minute()
    for hours, site in [(1, first), (5, second), (30, first), (200, second), (700, first)]:
        at = now - hours * HOUR + 17 * MINUTE
        receive(site, x, 20, at)
        ship(site, x, 3, at, at + MINUTE)
        order_line(site, x, at, order_id=f"o{hours}")
        record(count(site, y, at + 2 * MINUTE, hours % 4))
        deliver(site, at + 3 * MINUTE, created_at=at, accurate=hours % 2 == 0)
        snapshot(site, at, {x: 17, y: 2})
    before = {
        (scope, window): kpis_compute(site=scope, window=window, now=now)
        for scope in (None, "a", "b")
        for window in WINDOWS
    }

    call_command("rebuild_kpis")
    assert "Rebuilt KPI rollups from 20 movements" in capsys.readouterr().out
    call_command("rebuild_kpis", site="b")

    after = {
        (scope, window): kpis_compute(site=scope, window=window, now=now)
        for scope in (None, "a", "b")
        for window in WINDOWS
    }
    assert after == before
    assert before[(None, "30d")]["deliveries"] == 5
    assert before[(None, "7d")]["deliveries"] == 3


def test_unknown_site_is_refused():
    with pytest.raises(UnknownSite):
        kpis_compute(site="nowhere")


def test_trends_cover_the_window_in_buckets():
    site, sku = site_make("a"), sku_make("X", unit_cost="2")
    now = now_mid_minute()
    receive(site, sku, 10, now - 2 * HOUR)
    ship(site, sku, 1, now - 10 * MINUTE, now - 10 * MINUTE)
    deliver(site, now - 5 * MINUTE, accurate=False, cost="6")
    record(count(site, sku, now - 3 * MINUTE, 8))

    trends = kpi_trends_compute(site="a", window="1h", now=now)

    assert len(trends["accuracy"]) == 61
    assert [p["value"] for p in trends["accuracy"] if p["value"] is not None] == [0.0]
    assert [p["value"] for p in trends["cost_per_shipment"] if p["value"] is not None] == [6.0]
    assert next(p for p in trends["turnover"] if p["value"])["value"] == float(
        Decimal(2) / ((Decimal(20) + Decimal(18)) / 2) * 365 * 24 * 60
    )
    assert trends["mismatch_by_site"] == [{"site": "a", "rate": 1.0, "units": 1, "value": 2.0}]
    assert trends["worst_stockouts"] == []


def test_the_minute_under_way_shows_its_turnover_so_far_not_a_dip():
    # given a steady sale of 1 unit (cost 2) every 15 seconds, into the current minute
    site, sku = site_make("a"), sku_make("X", unit_cost="2")
    now = now_mid_minute()  # 30.25 s into its minute
    minute_start = now - dt.timedelta(seconds=30.25)
    receive(site, sku, 100, now - 2 * HOUR)
    for seconds in (-60, -45, -30, -15, 0, 15):  # four in the previous minute, two in this one
        at = minute_start + dt.timedelta(seconds=seconds)
        ship(site, sku, 1, at, at)

    points = kpi_trends_compute(site="a", window="1h", now=now)["turnover"]

    previous, current = points[-2]["value"], points[-1]["value"]
    # the previous minute: COGS 8 over 60 s, stock value 200 -> 192
    assert previous == float(Decimal(8) / ((Decimal(200) + Decimal(192)) / 2) * 365 * 24 * 60)
    # the current minute: COGS 4 over the 30.25 s it has lasted (not 60 s), value 192 -> 188
    expected = Decimal(4) / ((Decimal(192) + Decimal(188)) / 2) * 365 * 86400 / Decimal("30.25")
    assert current == float(expected)


def test_orders_per_minute_of_the_hour_under_way_are_over_the_minutes_it_has_lasted():
    # given 60 orders in the first 30 minutes of the current hour, and 60 in the hour before
    site, sku = site_make("a"), sku_make("X")
    now = now_mid_minute().replace(minute=30)
    hour_start = now.replace(minute=0, second=0, microsecond=0)
    for index in range(60):
        order_line(
            site, sku, hour_start + dt.timedelta(seconds=index * 29), qty=1, order_id=f"n{index}"
        )
        order_line(
            site, sku, hour_start - HOUR + dt.timedelta(minutes=index), qty=1, order_id=f"p{index}"
        )

    points = kpi_trends_compute(site="a", window="24h", now=now)["orders_per_minute"]

    # the live rate, 2 a minute, not 60 spread over a whole hour (1 a minute)
    assert points[-1]["value"] == pytest.approx(60 / 30.5, rel=1e-3)
    assert points[-2]["value"] == 1.0  # a finished hour: its 60 minutes
