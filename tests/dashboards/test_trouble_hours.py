"""The hourly trouble counters behind `as_of` reads of the stock KPIs (`StockTroubleStep`,
`StockTroubleHour`): hand-computed steps and counts, a late movement, an order line leaving the
30-day look-back, a change of reorder point, `rebuild_kpis` and the migration writing what the
writers keep, and (property) the writers' rows equal a rebuild's for random streams.

The story (H0 a whole hour 40 days ago; SKU A reorder point 5, SKU B reorder point 3), in
this order:
  H0+10m   receive 10 A
  H0+70m   reserve 6 A with an order line          -> A available 4 < 5: below from H0+2h
  H0+90m   adjust B by -2                          -> B negative and below from H0+2h
  H0+95m   reserve 1 B with an order line          -> B available -3: a stockout from H0+2h
                                                      until its line's 30 days end (H0+30d+2h)
"""

import datetime as dt
import io
from importlib import import_module
from urllib.parse import quote

import pytest
from django.apps import apps
from django.core.management import call_command
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kpis.models import ALL_SITES, StockTroubleHour, StockTroubleStep
from ledger.models import MovementKind, SiteReorderPoint
from tests.builders import site_make, sku_make, user_make
from tests.dashboards.kpi_helpers import move, order_line, receive, record
from tests.dashboards.test_as_of_property import _record, events
from tests.dashboards.test_kpis_property import REORDER_POINTS, SITES, SKUS

pytestmark = pytest.mark.django_db
HOUR = dt.timedelta(hours=1)
THIRTY_DAYS = dt.timedelta(days=30)


@pytest.fixture
def story():
    h0 = timezone.now().replace(minute=0, second=0, microsecond=0) - dt.timedelta(days=40)
    north = site_make("north")
    a = sku_make("A", unit_cost="2.50", reorder_point=5)
    b = sku_make("B", unit_cost="1.00", reorder_point=3)
    at = lambda minutes: h0 + dt.timedelta(minutes=minutes)  # noqa: E731
    receive(north, a, 10, at(10))
    record(move(north, a, MovementKind.ORDER_RESERVED, at(70), reserved=6))
    order_line(north, a, at(70), qty=6)
    record(move(north, b, MovementKind.ADJUSTED, at(90), on_hand=-2))
    record(move(north, b, MovementKind.ORDER_RESERVED, at(95), reserved=1))
    order_line(north, b, at(95), qty=1)
    return h0, at, north, a, b


def _steps() -> dict:
    return {
        (site_id, sku_id, at): tuple(step)
        for site_id, sku_id, at, *step in StockTroubleStep.objects.values_list(
            "site_id", "sku_id", "at", "negative_stock", "below_reorder_point", "stockouts"
        )
    }


def _hours() -> dict:
    """The counter rows summed over the writers' shards, zero rows left out."""
    rows = (
        StockTroubleHour.objects.values("site_id", "span_s", "start")
        .annotate(
            negative=Sum("negative_stock"), below=Sum("below_reorder_point"), out=Sum("stockouts")
        )
        .values_list("site_id", "span_s", "start", "negative", "below", "out")
    )
    return {
        (site_id, span, start): (negative, below, out)
        for site_id, span, start, negative, below, out in rows
        if (negative, below, out) != (0, 0, 0)
    }


def _trouble(client, moment: dt.datetime, **params) -> tuple[int, int, int]:
    query = "&".join(f"{key}={value}" for key, value in params.items())
    response = client.get(f"/api/kpis?as_of={quote(moment.isoformat())}&{query}")
    assert response.status_code == 200, response.content
    body = response.json()
    return body["negative_stock"], body["below_reorder_point"], body["stockouts"]


@pytest.fixture
def reader(client):
    client.force_login(user_make())
    return client


def test_each_pair_steps_where_its_trouble_changes_and_the_counters_add_them(story):
    h0, _at, north, a, b = story
    expiry = h0 + THIRTY_DAYS + 2 * HOUR  # the hour after B's order line's 30 days end

    assert _steps() == {
        (north.id, a.id, h0 + 2 * HOUR): (0, 1, 0),
        (north.id, b.id, h0 + 2 * HOUR): (1, 1, 1),
        (north.id, b.id, expiry): (0, 0, -1),
    }
    day = lambda moment: moment.replace(hour=0)  # noqa: E731
    expected = {}
    for site in (north.id, ALL_SITES):
        expected[(site, 3600, h0 + 2 * HOUR)] = (1, 2, 1)
        expected[(site, 3600, expiry)] = (0, 0, -1)
        expected[(site, 86400, day(h0 + 2 * HOUR))] = (1, 2, 1)
        expected[(site, 86400, day(expiry))] = (0, 0, -1)
    assert _hours() == expected


def test_a_read_between_whole_hours_corrects_the_hour_by_the_pairs_that_changed(story, reader):
    h0, at, *_ = story

    # (negative, below, stockouts)
    assert _trouble(reader, h0 + HOUR, site="north") == (0, 0, 0)
    assert _trouble(reader, at(70)) == (0, 1, 0)  # inside the hour: A's reservation counts
    assert _trouble(reader, at(95), site="north") == (1, 2, 1)
    assert _trouble(reader, h0 + 2 * HOUR) == (1, 2, 1)
    # B's order line leaves the look-back inside an hour, 30 days after it
    assert _trouble(reader, at(95) + THIRTY_DAYS - dt.timedelta(microseconds=1)) == (1, 2, 1)
    assert _trouble(reader, at(95) + THIRTY_DAYS, site="north") == (1, 2, 0)


def test_a_late_movement_rewrites_the_steps_after_it(story, reader):
    h0, at, north, a, b = story

    receive(north, b, 5, at(30))  # late: B was at 5 before its adjustment

    # B at H0+2h: on hand 3, available 2: below 3, neither negative nor out of stock
    assert _steps() == {
        (north.id, a.id, h0 + 2 * HOUR): (0, 1, 0),
        (north.id, b.id, h0 + 2 * HOUR): (0, 1, 0),
    }
    assert _trouble(reader, h0 + 3 * HOUR, site="north") == (0, 2, 0)
    assert _trouble(reader, at(95) + THIRTY_DAYS) == (0, 2, 0)


def test_a_new_reorder_point_judges_the_whole_past_by_it(story, reader):
    h0, _at, north, a, b = story

    SiteReorderPoint.objects.create(site=north, sku=a, reorder_point=2)

    # A at H0+2h: available 4, no longer below its site's point 2; B unchanged
    assert _trouble(reader, h0 + 2 * HOUR) == (1, 1, 1)
    assert (north.id, a.id, h0 + 2 * HOUR) not in _steps()
    b.reorder_point = None  # B: no reorder point at all, so never below one
    b.save()
    assert _trouble(reader, h0 + 2 * HOUR, site="north") == (1, 0, 1)
    assert _steps()[(north.id, b.id, h0 + 2 * HOUR)] == (1, 0, 1)


def test_rebuild_and_the_migration_write_what_the_writers_keep(story):
    _h0, at, north, _a, b = story
    receive(north, b, 5, at(30))  # late
    kept_steps, kept_hours = _steps(), _hours()

    call_command("rebuild_kpis", stdout=io.StringIO())
    rebuilt = (_steps(), _hours())
    StockTroubleStep.objects.all().delete()
    StockTroubleHour.objects.all().delete()
    import_module("kpis.migrations.0013_trouble_hours").trouble_hours_fill(apps, None)

    assert rebuilt == (kept_steps, kept_hours)
    assert (_steps(), _hours()) == (kept_steps, kept_hours)


@pytest.mark.slow
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    stream=st.lists(events, min_size=1, max_size=25),
    new_points=st.lists(
        st.tuples(
            st.sampled_from(sorted(SKUS)),
            st.one_of(st.none(), st.integers(min_value=0, max_value=8)),
        ),
        max_size=2,
    ),
)
def test_the_writers_rows_equal_a_rebuild_for_random_streams(stream, new_points):
    with transaction.atomic():
        base = timezone.now().replace(microsecond=0) - dt.timedelta(minutes=5)
        sites = {code: site_make(code) for code in SITES}
        skus = {
            code: sku_make(code, unit_cost=cost, reorder_point=REORDER_POINTS[code])
            for code, cost in SKUS.items()
        }
        half = len(stream) // 2
        _record(stream[:half], base, sites, skus)
        for code, point in new_points:  # a change of reorder point between writes
            skus[code].reorder_point = point
            skus[code].save()
        _record(stream[half:], base, sites, skus)
        kept = (_steps(), _hours())

        call_command("rebuild_kpis", stdout=io.StringIO())

        assert (_steps(), _hours()) == kept
        transaction.set_rollback(True)
