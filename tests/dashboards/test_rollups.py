"""The rollups the writers keep: buckets by event time, shards, the stock status copy."""

import datetime as dt
import threading

import pytest
from django.db import connection, transaction
from django.db.models import Sum
from hypothesis import given
from hypothesis import strategies as st

from kpis.models import ALL_SITES, KpiBucket, StockStatus
from kpis.reads import kpis_compute
from kpis.units import fulfillment_bin, instant, minute_of
from ledger.models import MovementKind, SiteReorderPoint
from tests.builders import site_make, sku_make
from tests.dashboards.kpi_helpers import move, now_mid_minute, receive, record, ship


def _bucket(site_id: int, span: int, start: int, field: str) -> int:
    return (
        KpiBucket.objects.filter(site_id=site_id, span_s=span, start=instant(start)).aggregate(
            total=Sum(field)
        )["total"]
        or 0
    )


@pytest.mark.django_db
def test_a_late_movement_updates_its_past_minute_hour_day_and_the_total():
    # given stock dispatched now
    site, sku = site_make("a"), sku_make("X", unit_cost="2")
    now = now_mid_minute()
    receive(site, sku, 10, now - dt.timedelta(days=3))
    ship(site, sku, 1, now, now)

    # when a dispatch of 20 hours ago arrives late
    late = now - dt.timedelta(hours=20, minutes=7)
    ship(site, sku, 3, late, late)

    # then it is in the buckets of its own time, for the site and for all sites
    minute = minute_of(late)
    for scope in (site.id, ALL_SITES):
        assert _bucket(scope, 60, minute, "cogs_e4") == 3 * 2 * 10000
        assert _bucket(scope, 3600, minute - minute % 3600, "cogs_e4") == 60000
        day = minute - minute % 86400
        same_day_as_now = minute_of(now) - minute_of(now) % 86400 == day
        assert _bucket(scope, 86400, day, "value_change_e4") == -60000 - (
            20000 if same_day_as_now else 0
        )
        assert _bucket(scope, 0, 0, "value_change_e4") == (10 - 4) * 2 * 10000


@pytest.mark.django_db
def test_a_reservation_alone_writes_no_bucket_but_updates_the_stock_status():
    site, sku = site_make("a"), sku_make("X", reorder_point=1)
    record(move(site, sku, MovementKind.ORDER_RESERVED, now_mid_minute(), reserved=2))

    assert not KpiBucket.objects.exists()
    status = StockStatus.objects.get(site_id=site.id, sku_id=sku.id)
    assert (status.on_hand, status.available, status.reorder_point) == (0, -2, 1)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_two_writers_of_one_site_do_not_wait_for_each_other(postgres_only):
    # given a writer of site "a" holding its transaction open after writing
    site, first, second = site_make("a"), sku_make("X", unit_cost="1"), sku_make("Y", unit_cost="1")
    now = now_mid_minute()
    wrote, release = threading.Event(), threading.Event()
    errors = []

    def slow_writer():
        try:
            with transaction.atomic():
                receive(site, first, 5, now)
                wrote.set()
                release.wait(timeout=20)
        except BaseException as error:
            errors.append(error)
        finally:
            connection.close()

    thread = threading.Thread(target=slow_writer)
    thread.start()
    assert wrote.wait(timeout=20)

    # when another writer of the same site and minute writes meanwhile
    with connection.cursor() as cursor:
        cursor.execute("SET lock_timeout = '3s'")  # waiting on the other's rows would fail
    try:
        receive(site, second, 7, now)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = 0")
        release.set()
        thread.join(timeout=20)

    # then both committed and both count
    assert not thread.is_alive(), "the first writer is stuck"
    assert not errors
    later = now + dt.timedelta(minutes=2)
    assert kpis_compute(site="a", window="1h", now=later)["inventory_turnover"] == 0.0
    assert (
        KpiBucket.objects.filter(site_id=site.id, span_s=0).aggregate(value=Sum("value_change_e4"))[
            "value"
        ]
        == 12 * 10000
    )


@given(st.lists(st.integers(min_value=-(10**9), max_value=10**13), min_size=2, max_size=200))
def test_fulfillment_bins_never_put_a_longer_time_in_a_lower_bin(durations):
    ordered = sorted(durations)

    bins = [fulfillment_bin(duration) for duration in ordered]

    assert bins == sorted(bins)


@pytest.mark.django_db
def test_the_stock_status_copies_the_sites_own_reorder_point_when_a_movement_is_recorded():
    # given SKU X with a default reorder point of 1, overridden to 7 at site a only
    site_a, site_b, sku = site_make("a"), site_make("b"), sku_make("X", reorder_point=1)
    SiteReorderPoint.objects.create(site=site_a, sku=sku, reorder_point=7)
    now = now_mid_minute()

    # when both sites receive stock, then a reserves some
    receive(site_a, sku, 5, now)
    receive(site_b, sku, 5, now)
    record(move(site_a, sku, MovementKind.ORDER_RESERVED, now, reserved=2))

    # then each copy holds the level as it stands and the reorder point in effect there
    status = {
        row.site_id: (row.on_hand, row.available, row.reorder_point)
        for row in StockStatus.objects.filter(sku_id=sku.id)
    }
    assert status == {site_a.id: (5, 3, 7), site_b.id: (5, 5, 1)}
    assert kpis_compute(site="a", window="1h", now=now)["below_reorder_point"] == 1
    assert kpis_compute(site="b", window="1h", now=now)["below_reorder_point"] == 0


@pytest.mark.django_db
@pytest.mark.parametrize("where", ["site", "sku"])
def test_a_new_reorder_point_counts_stock_that_moved_while_out_of_trouble(where):
    # given 20 of X at site a after moves that kept it above its reorder point of 1 (the
    # writers leave the copy of a pair out of trouble alone)
    site, sku = site_make("a"), sku_make("X", reorder_point=1)
    now = now_mid_minute()
    receive(site, sku, 50, now)
    record(move(site, sku, MovementKind.ADJUSTED, now, on_hand=-30))
    assert kpis_compute(site="a", window="1h", now=now)["below_reorder_point"] == 0

    # when the reorder point becomes 30, at the site or as the SKU's default
    if where == "site":
        SiteReorderPoint.objects.create(site=site, sku=sku, reorder_point=30)
    else:
        sku.reorder_point = 30
        sku.save()

    # then the pair counts as below it, with the level as it stands
    assert kpis_compute(site="a", window="1h", now=now)["below_reorder_point"] == 1
    status = StockStatus.objects.get(site_id=site.id, sku_id=sku.id)
    assert (status.on_hand, status.available, status.reorder_point) == (20, 20, 30)


@pytest.mark.django_db
def test_a_pair_entering_and_leaving_trouble_is_counted_each_time():
    # given X at site a with a reorder point of 10
    site, sku = site_make("a"), sku_make("X", reorder_point=10)
    now = now_mid_minute()

    def now_kpis():
        kpis = kpis_compute(site="a", window="1h", now=now)
        return kpis["negative_stock"], kpis["below_reorder_point"]

    # when its stock goes from 40 to 15 (out of trouble), 4 (below), 30 (out), -2 (negative)
    receive(site, sku, 40, now)
    record(move(site, sku, MovementKind.ADJUSTED, now, on_hand=-25))
    counts = [now_kpis()]
    for delta in (-11, 26, -32):
        record(move(site, sku, MovementKind.ADJUSTED, now, on_hand=delta))
        counts.append(now_kpis())

    # then each state is counted as it is
    assert counts == [(0, 0), (0, 1), (0, 0), (1, 1)]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_reorder_point_set_while_a_writer_moves_the_level_counts_the_level_it_left(
    postgres_only,
):
    # given 20 of X at site a (reorder point 1), and a writer that takes it to 5 and holds its
    # transaction open (5 is above 1: it leaves the copy of the pair alone)
    site, sku = site_make("a"), sku_make("X", reorder_point=1)
    now = now_mid_minute()
    receive(site, sku, 20, now)
    moved, release = threading.Event(), threading.Event()
    errors = []

    def writer():
        with transaction.atomic():
            record(move(site, sku, MovementKind.ADJUSTED, now, on_hand=-15))
            moved.set()
            release.wait(timeout=20)

    writing = _thread_started(writer, errors)
    assert moved.wait(timeout=20)

    # when the site's reorder point becomes 10 meanwhile, and the writer commits a moment later
    setting = _thread_started(
        lambda: SiteReorderPoint.objects.create(site=site, sku=sku, reorder_point=10), errors
    )
    setting.join(timeout=1)
    # it waits for the writer (had it not, it would have copied the level before the write)
    assert setting.is_alive(), "the reorder point was set without waiting for the writer"
    release.set()
    writing.join(timeout=20)
    setting.join(timeout=20)

    # then the pair counts as below its new point, with the level the writer left
    assert not writing.is_alive() and not setting.is_alive(), "a transaction is stuck"
    assert not errors
    assert kpis_compute(site="a", window="1h", now=now)["below_reorder_point"] == 1
    status = StockStatus.objects.get(site_id=site.id, sku_id=sku.id)
    assert (status.available, status.reorder_point) == (5, 10)


def _thread_started(work, errors: list) -> threading.Thread:
    """Run `work` in a thread of its own (its own connection); its exception goes to `errors`."""

    def run():
        try:
            work()
        except BaseException as error:  # reported to the test, not swallowed
            errors.append(error)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread
