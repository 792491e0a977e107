"""The "now" counts (stockouts, negative stock, below reorder point) come from counters that
every writer of the stock status keeps: they must match a plain count of the pairs, through
ingest, corrections, reorder point changes, concurrent writers and `rebuild_kpis`."""

import datetime as dt
import io
import threading

import pytest
from django.core.management import call_command
from django.db import connection, transaction

from core.roles import STOCK_STAFF
from corrections.services import CorrectionDraft, corrections_request
from kpis.models import ALL_SITES
from kpis.reads import kpis_compute
from kpis.rollups import OrderLineFact, rollups_facts_record
from ledger.models import MovementKind, SiteReorderPoint
from tests.builders import site_make, sku_make, user_make
from tests.dashboards.kpi_helpers import counted_from_status, counters, move, record
from tests.ingest.helpers import (
    BASE_TIME,
    batch_apply,
    event,
    order_created,
    received,
    source_make,
)

DEMAND_LOOKBACK = dt.timedelta(days=30)


def now_counts(site: str | None, now: dt.datetime) -> tuple[int, int, int]:
    kpis = kpis_compute(site=site, window="1h", now=now)
    return kpis["stockouts"], kpis["negative_stock"], kpis["below_reorder_point"]


@pytest.mark.django_db
def test_counts_follow_ingest_corrections_and_reorder_point_changes():
    # given site north with A (reorder point 5), B (none) and C (none); south is quiet
    north = site_make("north")
    site_make("south")
    sku_a, sku_b = sku_make("A", reorder_point=5), sku_make("B")
    sku_make("C")
    source, _ = source_make()
    now = BASE_TIME + dt.timedelta(hours=1)

    # when a feed receives 3 A, orders 2 B (none on hand) and adjusts C by -4
    batch_apply(
        source,
        [
            received("A", 3),
            order_created("o-1", {"B": 2}, minutes=10),
            event("stock.adjusted", sku="C", qty_delta=-4, reason="damaged", minutes=20),
        ],
    )

    # then A is below its reorder point (3 < 5), B is a stockout (available -2, ordered), and C
    # is negative (no demand: not a stockout; no reorder point: not below)
    assert now_counts("north", now) == now_counts(None, now) == (1, 1, 1)
    assert now_counts("south", now) == (0, 0, 0)
    assert counters() == counted_from_status()

    # when stock staff correct C to 5 counted and A by +2
    staff = user_make(role=STOCK_STAFF)
    corrections_request(
        drafts=[
            CorrectionDraft(site="north", sku="C", reason="recount", counted_qty=5),
            CorrectionDraft(site="north", sku="A", reason="found", delta=2),
        ],
        requested_by=staff,
    )

    # then C is no longer negative and A (5) is no longer below 5
    assert now_counts("north", now) == (1, 0, 0)
    assert counters() == counted_from_status()

    # when north's own reorder point for A becomes 8, and B's default becomes 1
    SiteReorderPoint.objects.create(site=north, sku=sku_a, reorder_point=8)
    sku_b.reorder_point = 1
    sku_b.save()

    # then A (5 < 8) and B (-2 < 1) are below; C has no reorder point
    assert now_counts("north", now) == now_counts(None, now) == (1, 0, 2)
    assert counters() == counted_from_status()

    # and B's demand ages out 30 days after its order line (10 minutes after BASE_TIME)
    ordered = BASE_TIME + dt.timedelta(minutes=10)
    assert now_counts("north", ordered + DEMAND_LOOKBACK - dt.timedelta(microseconds=1))[0] == 1
    assert now_counts("north", ordered + DEMAND_LOOKBACK)[0] == 0

    # and rebuild_kpis recounts the same counters
    before = counters()
    call_command("rebuild_kpis", stdout=io.StringIO())
    assert counters() == before
    assert {key[0] for key in before} == {north.id, ALL_SITES}


@pytest.mark.django_db
def test_stockouts_at_the_edge_of_the_demand_lookback_are_exact_to_the_microsecond():
    # given three pairs out of stock, last ordered 30 days ago give or take a microsecond,
    # and one ordered 30 days and 2 hours ago (read from the hour buckets, not the edge)
    site = site_make("a")
    skus = [sku_make() for _ in range(4)]
    now = BASE_TIME.replace(second=17, microsecond=500)
    edge = now - DEMAND_LOOKBACK
    for sku, ordered in zip(
        skus,
        [
            edge - dt.timedelta(microseconds=1),
            edge,
            edge + dt.timedelta(microseconds=1),
            edge + dt.timedelta(hours=2),
        ],
        strict=True,
    ):
        record(move(site, sku, MovementKind.ORDER_RESERVED, ordered, reserved=1))
        rollups_facts_record(order_lines=[OrderLineFact(site.id, sku.id, ordered, 1)])

    # then only those ordered after now - 30 days count (the window is "in the last 30 days")
    assert now_counts("a", now)[0] == 2
    assert now_counts(None, now + dt.timedelta(hours=1))[0] == 1
    assert now_counts(None, now + dt.timedelta(hours=3))[0] == 0
    assert counters() == counted_from_status()


def _in_thread(work, started: threading.Event, release: threading.Event, errors: list):
    def run():
        try:
            with transaction.atomic():
                work()
                started.set()
                release.wait(timeout=20)
        except BaseException as error:
            errors.append(error)
            started.set()
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_of_the_same_pairs_keep_the_counts_exact(postgres_only):
    # given a site whose pair X is about to go negative and pair Y is new
    site = site_make("a")
    sku_x, sku_y = sku_make("X", reorder_point=2), sku_make("Y", reorder_point=2)
    now = BASE_TIME
    started, release, errors = threading.Event(), threading.Event(), []

    def first_writer():
        record(move(site, sku_x, MovementKind.ADJUSTED, now, on_hand=-1))
        rollups_facts_record(order_lines=[OrderLineFact(site.id, sku_y.id, now, 1)])

    # when a first writer changes X and orders Y (a new pair), and holds its transaction open
    thread = _in_thread(first_writer, started, release, errors)
    assert started.wait(timeout=20)
    assert not errors

    # and a second writer orders Y again, then changes X and Y, meanwhile (it waits for the
    # first writer's Y row, not yet committed, before it can see what Y counted)
    def second_writer():
        rollups_facts_record(
            order_lines=[OrderLineFact(site.id, sku_y.id, now + dt.timedelta(minutes=1), 1)]
        )
        record(
            move(site, sku_x, MovementKind.ADJUSTED, now, on_hand=-2),
            move(site, sku_y, MovementKind.ORDER_RESERVED, now, reserved=1),
        )

    second = threading.Thread(target=lambda: _second(second_writer, errors))
    second.start()
    second.join(timeout=1)
    assert second.is_alive(), "the second writer did not wait for the first writer's locks"
    release.set()
    thread.join(timeout=20)
    second.join(timeout=20)

    # then both committed, and the counts are those of the final state
    assert not thread.is_alive() and not second.is_alive(), "a writer is stuck"
    assert not errors
    assert now_counts("a", now + dt.timedelta(minutes=5)) == (1, 1, 2)
    assert counters() == counted_from_status()


def _second(work, errors: list) -> None:
    try:
        with transaction.atomic():
            work()
    except BaseException as error:
        errors.append(error)
    finally:
        connection.close()
