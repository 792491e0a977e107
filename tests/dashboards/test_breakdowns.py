"""`by=channel` and `by=courier` of the KPIs: every field of the breakdown hand-computed, with
its edge cases, kept by the writers and rebuilt by `rebuild_kpis`."""

import datetime as dt
import json

import numpy
import pytest
from django.core.management import call_command
from django.utils import timezone

from ingest.sources import feed_source_create
from kpis.breakdowns import UnknownBreakdown
from kpis.reads import kpis_compute
from kpis.windows import WINDOWS
from tests.builders import site_make, sku_make
from tests.dashboards.kpi_helpers import deliver, now_mid_minute
from tests.ingest.helpers import (
    BASE_TIME,
    batch_apply,
    order_created,
    order_delivered,
    order_dispatched,
    received,
    source_make,
)

pytestmark = pytest.mark.django_db
SECOND = dt.timedelta(seconds=1)
MINUTE = dt.timedelta(minutes=1)
HOUR = dt.timedelta(hours=1)
ENTRY_KEYS = [
    "key",
    "deliveries",
    "order_accuracy",
    "cost_per_shipment",
    "fulfillment_p50_s",
    "fulfillment_p90_s",
]


def breakdown(by: str, *, site: str | None = None, window: str = "1h", now) -> list[dict]:
    return kpis_compute(site=site, window=window, now=now, by=by)["breakdown"]


def by_key(entries: list[dict]) -> dict[str, dict]:
    return {entry["key"]: entry for entry in entries}


def test_no_deliveries_gives_an_empty_breakdown_and_no_breakdown_without_by():
    site_make("a")
    now = now_mid_minute()

    assert breakdown("courier", site="a", now=now) == []
    assert breakdown("channel", now=now) == []
    assert "breakdown" not in kpis_compute(site="a", now=now)


def test_every_field_of_a_courier_and_a_channel_hand_computed():
    # given courier c-1: four deliveries whose creation is known (60, 120, 180, 600 s; one
    # inaccurate; costs 5, 7, 9, 3) and courier c-2: one delivery whose creation is unknown
    site = site_make("a")
    now = now_mid_minute()
    for minutes_ago, seconds, accurate, cost, channel in [
        (2, 60, True, "5.00", "web"),
        (3, 600, True, "3.00", "web"),
        (4, 120, False, "7.00", "marketplace"),
        (5, 180, True, "9.00", "web"),
    ]:
        delivered = now - minutes_ago * MINUTE
        deliver(
            site,
            delivered,
            created_at=delivered - seconds * SECOND,
            accurate=accurate,
            cost=cost,
            channel=channel,
            courier="c-1",
        )
    deliver(site, now - 10 * MINUTE, cost="4.50", accurate=False, channel="web", courier="c-2")

    couriers = breakdown("courier", site="a", now=now)
    channels = breakdown("channel", site="a", now=now)

    # then c-1: 4 deliveries, 3 accurate, (5+3+7+9)/4 = 6; sorted durations 60, 120, 180, 600:
    # p50 at rank 1.5 = 120 + 0.5 * 60 = 150; p90 at rank 2.7 = 180 + 0.7 * 420 = 474
    assert couriers == [
        {
            "key": "c-1",
            "deliveries": 4,
            "order_accuracy": 0.75,
            "cost_per_shipment": 6.0,
            "fulfillment_p50_s": 150.0,
            "fulfillment_p90_s": pytest.approx(474.0, abs=1e-9),
        },
        # a courier with one delivery whose order's creation is unknown: no percentiles
        {
            "key": "c-2",
            "deliveries": 1,
            "order_accuracy": 0.0,
            "cost_per_shipment": 4.5,
            "fulfillment_p50_s": None,
            "fulfillment_p90_s": None,
        },
    ]
    assert list(couriers[0]) == ENTRY_KEYS
    # web: 60, 600, 180 known (and c-2's unknown one): 4 deliveries, 3 accurate,
    # (5+3+9+4.5)/4 = 5.375; durations 60, 180, 600: p50 180, p90 at rank 1.8 = 180 + 0.8*420
    assert channels == [
        {
            "key": "web",
            "deliveries": 4,
            "order_accuracy": 0.75,
            "cost_per_shipment": 5.375,
            "fulfillment_p50_s": 180.0,
            "fulfillment_p90_s": pytest.approx(516.0, abs=1e-9),
        },
        # a channel with one delivery: both percentiles are its one duration
        {
            "key": "marketplace",
            "deliveries": 1,
            "order_accuracy": 0.0,
            "cost_per_shipment": 7.0,
            "fulfillment_p50_s": 120.0,
            "fulfillment_p90_s": 120.0,
        },
    ]
    assert channels[0]["fulfillment_p90_s"] == pytest.approx(
        numpy.percentile([60, 600, 180], 90), abs=1e-9
    )


def test_entries_are_ordered_by_deliveries_descending_then_key():
    site = site_make("a")
    now = now_mid_minute()
    for courier, deliveries in [("b", 2), ("a", 2), ("z", 3), ("c", 1)]:
        for index in range(deliveries):
            deliver(site, now - (index + 1) * MINUTE, courier=courier)

    assert [entry["key"] for entry in breakdown("courier", now=now)] == ["z", "a", "b", "c"]


def test_breakdowns_share_the_window_and_scope_of_the_top_level_keys():
    # given deliveries at two sites, one just outside the 1h window and one just inside it,
    # both in the minute holding the window's start, and one after `now` in its minute
    first, second = site_make("a"), site_make("b")
    now = now_mid_minute()
    start = now - HOUR
    deliver(first, start, courier="edge", cost="1.00")  # (start, now]: not in
    deliver(first, start + dt.timedelta(microseconds=1), courier="edge", cost="2.00")
    deliver(first, now, courier="edge", cost="4.00")
    deliver(first, now + dt.timedelta(microseconds=1), courier="edge", cost="8.00")
    deliver(second, now - MINUTE, courier="edge", cost="16.00")
    deliver(second, now - 2 * HOUR, courier="old", cost="32.00")

    one_site = by_key(breakdown("courier", site="a", now=now))
    every_site = by_key(breakdown("courier", now=now))
    day = by_key(breakdown("courier", window="24h", now=now))

    assert one_site["edge"]["deliveries"] == 2
    assert one_site["edge"]["cost_per_shipment"] == 3.0  # (2 + 4) / 2
    assert "old" not in one_site
    assert every_site["edge"]["deliveries"] == 3
    assert every_site["edge"]["cost_per_shipment"] == 22 / 3
    assert set(every_site) == {"edge"}
    assert day["old"]["deliveries"] == 1
    # the breakdown adds up to the top-level figures of the same read
    answer = kpis_compute(window="24h", now=now, by="courier")
    assert sum(entry["deliveries"] for entry in answer["breakdown"]) == answer["deliveries"]


def test_the_window_head_late_in_its_minute_adds_the_facts_after_the_start():
    # now at second 50: the window's start is late in its minute (the other side of `Head`)
    site = site_make("a")
    now = now_mid_minute().replace(second=50)
    start = now - HOUR
    deliver(site, start - SECOND, courier="x", cost="1.00")
    deliver(site, start + SECOND, courier="x", cost="2.00", created_at=start - 59 * SECOND)

    entry = by_key(breakdown("courier", now=now))["x"]

    assert (entry["deliveries"], entry["cost_per_shipment"]) == (1, 2.0)
    assert entry["fulfillment_p50_s"] == 60.0


def test_a_late_delivery_updates_the_past_window_it_belongs_to():
    site = site_make("a")
    now = now_mid_minute()
    deliver(site, now - 3 * HOUR, courier="x", cost="2.00", channel="web")
    before = by_key(breakdown("channel", window="24h", now=now))["web"]

    # when a delivery dated two hours ago arrives now
    deliver(
        site,
        now - 2 * HOUR,
        courier="x",
        cost="4.00",
        channel="web",
        created_at=now - 2 * HOUR - 90 * SECOND,
    )

    after = by_key(breakdown("channel", window="24h", now=now))["web"]
    assert (before["deliveries"], before["fulfillment_p50_s"]) == (1, None)
    assert (after["deliveries"], after["cost_per_shipment"]) == (2, 3.0)
    assert after["fulfillment_p50_s"] == after["fulfillment_p90_s"] == 90.0
    assert breakdown("channel", window="1h", now=now) == []


def test_percentiles_of_many_deliveries_match_numpy_per_courier():
    # given 240 deliveries of three couriers over a day, durations over many bins
    first, second = site_make("a"), site_make("b")
    now = now_mid_minute()
    durations: dict[str, list[float]] = {"c-1": [], "c-2": [], "c-3": []}
    for index in range(240):
        courier = f"c-{index % 3 + 1}"
        seconds = 30 + (index * 7919) % 20000 + (index % 5) * 0.25
        delivered = now - (index * 6 + 1) * MINUTE
        deliver(
            first if index % 2 else second,
            delivered,
            courier=courier,
            created_at=delivered - dt.timedelta(seconds=seconds),
        )
        durations[courier].append(seconds)

    entries = by_key(breakdown("courier", window="24h", now=now))

    for courier, seconds in durations.items():
        assert entries[courier]["deliveries"] == 80
        assert entries[courier]["fulfillment_p50_s"] == pytest.approx(
            numpy.percentile(seconds, 50), abs=1e-6
        )
        assert entries[courier]["fulfillment_p90_s"] == pytest.approx(
            numpy.percentile(seconds, 90), abs=1e-6
        )


def test_rebuild_kpis_gives_the_same_breakdowns():
    first, second = site_make("a"), site_make("b")
    now = now_mid_minute()
    for hours in (0.5, 5, 30, 200, 700):
        at = now - hours * HOUR
        for site, courier, channel in [(first, "c-1", "web"), (second, "c-2", "store")]:
            deliver(
                site,
                at,
                courier=courier,
                channel=channel,
                created_at=at - hours * MINUTE,
                accurate=hours > 10,
                cost=str(hours),
            )

    def every_answer():
        return {
            (scope, window, by): kpis_compute(site=scope, window=window, now=now, by=by)
            for scope in (None, "a", "b")
            for window in WINDOWS
            for by in ("channel", "courier")
        }

    before = every_answer()
    call_command("rebuild_kpis")
    after_all = every_answer()
    call_command("rebuild_kpis", site="b")

    assert after_all == before
    assert every_answer() == before
    assert [entry["key"] for entry in before[(None, "30d", "courier")]["breakdown"]] == [
        "c-1",
        "c-2",
    ]
    # a tie (five each in 30 days, 700 h ago included) goes by key
    assert [
        (entry["key"], entry["deliveries"])
        for entry in before[(None, "30d", "channel")]["breakdown"]
    ] == [("store", 5), ("web", 5)]
    assert before[("a", "7d", "channel")]["breakdown"][0]["deliveries"] == 3


def test_an_unknown_by_is_refused():
    with pytest.raises(UnknownBreakdown, match="by must be one of channel, courier; got 'site'"):
        kpis_compute(by="site")


def test_ingest_keeps_the_order_channel_and_the_delivery_courier():
    # given orders created on two channels, delivered by two couriers, through the feed
    site_make("north")
    sku_make("X")
    source, _ = source_make()
    batch_apply(
        source,
        [
            received("X", 10),
            order_created("o1", {"X": 1}, channel="web"),
            order_created("o2", {"X": 1}, channel="store"),
            order_created("o3", {"X": 1}),  # default "web" of the helper
            order_dispatched("o1", minutes=1, courier_id="bike-7"),
            order_delivered("o1", minutes=4, courier_id="bike-7", shipping_cost="4.00"),
            order_dispatched("o2", minutes=1, courier_id="van-2"),
            order_delivered("o2", minutes=10, courier_id="van-2", accurate=False),
            # delivered before its order is created: held, then applied with its channel
            order_delivered("o4", minutes=5, courier_id="bike-7", shipping_cost="2.00"),
            order_created("o4", {"X": 1}, minutes=3, channel="marketplace"),
        ],
    )
    now = BASE_TIME + 20 * MINUTE

    couriers = breakdown("courier", site="north", now=now)
    channels = by_key(breakdown("channel", site="north", now=now))

    assert [(entry["key"], entry["deliveries"]) for entry in couriers] == [
        ("bike-7", 2),
        ("van-2", 1),
    ]
    assert couriers[0]["cost_per_shipment"] == 3.0
    # o1: 4 min, o4: 2 min
    assert (couriers[0]["fulfillment_p50_s"], couriers[0]["fulfillment_p90_s"]) == (180.0, 228.0)
    assert couriers[1]["order_accuracy"] == 0.0
    assert set(channels) == {"web", "store", "marketplace"}
    assert channels["store"]["fulfillment_p50_s"] == 600.0
    assert channels["marketplace"]["fulfillment_p50_s"] == 120.0


def test_breakdown_round_trips_through_json():
    site = site_make("a")
    now = now_mid_minute()
    deliver(site, now - MINUTE, courier="c", created_at=now - 2 * MINUTE)

    answer = kpis_compute(window="1h", now=now, by="courier")

    assert json.loads(json.dumps(answer)) == answer


def test_the_api_answers_a_breakdown_and_refuses_a_bad_by_in_json(client):
    site = site_make("berlin")
    token = feed_source_create(name="wms").token
    deliver(site, timezone.now() - MINUTE, courier="bike-7", cost="4.00", channel="web")
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}

    answer = client.get("/api/kpis?site=berlin&window=24h&by=courier", **auth).json()
    refused = client.get("/api/kpis?by=couriers", **auth)
    plain = client.get("/api/kpis?site=berlin", **auth).json()

    assert answer["breakdown"] == [
        {
            "key": "bike-7",
            "deliveries": 1,
            "order_accuracy": 1.0,
            "cost_per_shipment": 4.0,
            "fulfillment_p50_s": None,
            "fulfillment_p90_s": None,
        }
    ]
    assert answer["deliveries"] == 1
    assert refused.status_code == 400
    assert refused.json() == {"detail": "by must be one of channel, courier; got 'couriers'"}
    assert "breakdown" not in plain


def test_the_openapi_document_describes_by(client):
    document = client.get("/api/openapi.json").json()

    operation = next(
        methods["get"] for path, methods in document["paths"].items() if path.endswith("/kpis")
    )
    by = next(parameter for parameter in operation["parameters"] if parameter["name"] == "by")
    assert by["in"] == "query"
    assert "breakdown" in operation["description"]
    assert "courier_id" in operation["description"]


def test_a_breakdown_as_of_a_past_instant_leaves_out_what_came_after_it():
    site = site_make("a")
    now = now_mid_minute()
    instant = now - 2 * HOUR
    deliver(site, instant - 10 * MINUTE, courier="x", cost="2.00", created_at=instant - HOUR)
    deliver(site, instant + MINUTE, courier="x", cost="50.00")  # after the instant
    deliver(site, now - MINUTE, courier="y", cost="1.00")

    past = kpis_compute(window="1h", as_of=instant, by="courier")["breakdown"]

    assert past == [
        {
            "key": "x",
            "deliveries": 1,
            "order_accuracy": 1.0,
            "cost_per_shipment": 2.0,
            "fulfillment_p50_s": 3000.0,
            "fulfillment_p90_s": 3000.0,
        }
    ]
