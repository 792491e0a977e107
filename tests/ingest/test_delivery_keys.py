"""Deliveries recorded before channels and couriers were kept: `rebuild_kpis` gives them the
channel of their stored order and the courier of their `order.delivered` event while the
batch's raw body is kept; once the body is dropped, the courier stays unknown (`""`)."""

import datetime as dt
import io

import pytest
from django.core.management import call_command

from ingest.housekeeping import batch_bodies_drop
from kpis.models import DeliveryRecord
from kpis.reads import kpis_compute
from kpis.rebuild import REBUILD_PREPARERS, rollups_rebuild
from tests.builders import site_make, sku_make
from tests.ingest.helpers import (
    BASE_TIME,
    batch_apply,
    order_created,
    order_delivered,
    received,
    source_make,
)

pytestmark = pytest.mark.django_db
NOW = BASE_TIME + dt.timedelta(minutes=30)


def _breakdown(by: str) -> dict[str, int]:
    entries = kpis_compute(site="north", window="1h", now=NOW, by=by)["breakdown"]
    return {entry["key"]: entry["deliveries"] for entry in entries}


def _recorded_by_an_older_version() -> None:
    """Empty every delivery's channel and courier, and fold the rollups from them (without
    the backfill), as a version before breakdowns left them."""
    DeliveryRecord.objects.update(channel="", courier_id="")
    backfill = REBUILD_PREPARERS.pop("delivery_keys")
    try:
        rollups_rebuild()
    finally:
        REBUILD_PREPARERS["delivery_keys"] = backfill


@pytest.fixture
def old_deliveries():
    """Two batches applied, then their deliveries' keys emptied as an older version recorded
    them; the first batch's body is then dropped by the housekeeping."""

    site_make("north")
    sku_make("X")
    source, _ = source_make()
    batch_apply(
        source,
        [
            received("X", 10),
            order_created("o1", {"X": 1}, channel="store"),
            order_delivered("o1", minutes=4, courier_id="bike-7"),
        ],
    )
    kept = batch_apply(
        source,
        [
            order_created("o2", {"X": 1}, minutes=1, channel="web"),
            order_created("o3", {"X": 1}, minutes=2, channel="web"),
            order_delivered("o2", minutes=5, courier_id="bike-7"),
            order_delivered("o3", minutes=6, courier_id="van-2"),
        ],
    )
    _recorded_by_an_older_version()
    assert batch_bodies_drop(received_before=kept.received_at) == 1


def test_rebuild_gives_old_deliveries_the_channel_and_courier_ingest_still_knows(
    old_deliveries,
):
    assert _breakdown("courier") == {"": 3}

    out = io.StringIO()
    call_command("rebuild_kpis", stdout=out)

    # o1's body is gone: its channel comes from its order, its courier is unknown for good
    assert _breakdown("courier") == {"": 1, "bike-7": 1, "van-2": 1}
    assert _breakdown("channel") == {"web": 2, "store": 1}
    assert "Deliveries without channel and courier: 3" in out.getvalue()


def test_a_second_rebuild_changes_nothing_more(old_deliveries):
    call_command("rebuild_kpis", stdout=io.StringIO())
    first = (_breakdown("courier"), _breakdown("channel"))

    call_command("rebuild_kpis", stdout=io.StringIO())

    assert (_breakdown("courier"), _breakdown("channel")) == first
    assert first[1] == {"web": 2, "store": 1}


def test_orders_of_a_site_created_at_the_same_instant_on_two_channels_tell_nothing():
    site_make("north")
    sku_make("X")
    source, _ = source_make()
    batch_apply(
        source,
        [
            received("X", 10),
            order_created("o1", {"X": 1}, minutes=1, channel="store"),
            order_created("o2", {"X": 1}, minutes=1, channel="web"),
            order_delivered("o1", minutes=4, courier_id="bike-7"),
            order_delivered("o2", minutes=5, courier_id="van-2"),
        ],
    )
    _recorded_by_an_older_version()

    call_command("rebuild_kpis", stdout=io.StringIO())

    # which of the two deliveries was which order cannot be told from the record
    assert _breakdown("channel") == {"": 2}
    assert _breakdown("courier") == {"": 2}
