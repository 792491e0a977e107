"""`stock.snapshot`: compared with the stock at its place among the events applied.

The reconciliation skew (docs/kpis.md) compares a snapshot's lines with on_hand as it stood at the
snapshot's position: on_hand before the batch (or group) plus the movements of the events
applied before it, in order, across the batches of a group.
"""

import io

import pytest
from django.core.management import call_command
from django.utils import timezone

from ingest.processing import batch_process
from kpis.models import SnapshotRecord
from kpis.reads import kpis_compute
from ledger.models import Sku
from tests.builders import site_make, sku_make
from tests.ingest.helpers import (
    batch_apply,
    event,
    order_created,
    order_dispatched,
    received,
    source_make,
)
from tests.ingest.test_grouping import batch_store

pytestmark = pytest.mark.django_db


@pytest.fixture
def source():
    site_make("north")
    for code in ("A", "B", "C"):
        sku_make(code)
    source, _ = source_make()
    # opening stock, applied earlier: A 10, B 4
    batch_apply(source, [received("A", 10), received("B", 4)])
    return source


def snapshot(**lines: int) -> dict:
    return event("stock.snapshot", lines=[{"sku": sku, "qty": qty} for sku, qty in lines.items()])


def skew() -> tuple:
    """What /api/kpis shows for the site: (reconciliation_skew, reconciliation_skew_units)."""
    kpis = kpis_compute(site="north", window="1h")
    return kpis["reconciliation_skew"], kpis["reconciliation_skew_units"]


def compared_with() -> dict[str, int]:
    """The on_hand the latest snapshot was compared with, by SKU code."""
    codes = dict(Sku.objects.values_list("id", "code"))
    record = SnapshotRecord.objects.latest("id")
    return {codes[sku_id]: on_hand for sku_id, _, on_hand in record.lines}


def test_receipts_then_a_snapshot_that_saw_them_in_one_batch_show_no_skew(source):
    # when a producer sends receipts and then the snapshot its system took after them
    batch_apply(source, [received("A", 5), received("B", 1), snapshot(A=15, B=5)])

    # then the snapshot agrees with the stock at its place in the batch
    assert compared_with() == {"A": 15, "B": 5}
    assert skew() == (0.0, 0)


def test_a_snapshot_then_receipts_in_one_batch_show_no_skew(source):
    # when the snapshot comes first, then receipts it could not have seen
    batch_apply(source, [snapshot(A=10, B=4), received("A", 5), received("B", 1)])

    assert compared_with() == {"A": 10, "B": 4}
    assert skew() == (0.0, 0)


def test_a_snapshot_between_a_count_and_a_dispatch_sees_the_count_only(source):
    # given an order reserving A
    batch_apply(source, [order_created("o-1", {"A": 3})])
    # when a count, the snapshot, then the order's dispatch come in one batch
    batch_apply(
        source,
        [
            event("stock.counted", sku="A", counted_qty=12),
            snapshot(A=12),
            order_dispatched("o-1"),
        ],
    )

    assert compared_with() == {"A": 12}
    assert skew() == (0.0, 0)


def test_held_events_applied_with_their_order_count_before_a_later_snapshot(source):
    # given a dispatch held because its order is not known yet
    batch_apply(source, [order_dispatched("o-2")])
    # when the order arrives, then a snapshot: the held dispatch is applied right after the
    # order, so before the snapshot
    batch_apply(source, [order_created("o-2", {"A": 4}), snapshot(A=6)])

    assert compared_with() == {"A": 6}
    assert skew() == (0.0, 0)


def test_a_snapshot_in_the_second_batch_of_a_group_sees_the_first_batch_and_its_own_events(
    source,
):
    # given two queued batches: receipts, then a receipt, the snapshot and another receipt
    first = batch_store(source, [received("A", 5), received("B", 2)])
    batch_store(source, [received("A", 1), snapshot(A=16, B=6), received("A", 100)])

    # when a worker applies them as one group
    batch_process(batch_id=first.pk, group_events=10_000)

    # then the snapshot is compared with A 10+5+1 and B 4+2, not with the stock before either
    assert compared_with() == {"A": 16, "B": 6}
    assert skew() == (0.0, 0)


def test_a_real_mismatch_shows_its_lines_and_units_and_rebuild_kpis_keeps_them(source):
    # when the snapshot, after a receipt of A in its batch, is wrong about A by 3 units, right
    # about B (not moved in the batch), and names C that the site never held
    batch_apply(source, [received("A", 5), snapshot(A=12, B=4, C=2)])

    # then two of its three lines are off, by 3 + 2 units
    assert compared_with() == {"A": 15, "B": 4, "C": 0}
    assert skew() == (pytest.approx(2 / 3), 5)

    # and rebuilding the KPIs from the ledger and the stored facts shows the same
    now = timezone.now()
    before = {scope: kpis_compute(site=scope, window="1h", now=now) for scope in ("north", None)}
    call_command("rebuild_kpis", stdout=io.StringIO())
    after = {scope: kpis_compute(site=scope, window="1h", now=now) for scope in ("north", None)}
    assert after == before
    assert after["north"]["reconciliation_skew_units"] == 5
