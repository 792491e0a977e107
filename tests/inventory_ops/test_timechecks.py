"""Stored event times: the database refuses what no read can load, and reads survive old rows."""

import json
from datetime import UTC, datetime
from io import StringIO

import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, transaction

from dashboards.panels import Scope, scope_view_build
from ingest.models import FeedSource
from ledger.models import Movement
from ledger.services import movements_record
from oncall.default_rules import alert_rules_default_create
from oncall.services import alerts_evaluate
from tests.builders import READ_PATHS, receive, site_make, sku_make, user_make
from tests.ingest.helpers import source_make

pytestmark = pytest.mark.django_db

FAR = "9999-12-31T23:59:59-14:00"  # stored by PostgreSQL as year 10000


@pytest.fixture
def stocked():
    site, sku = site_make("north"), sku_make("A")
    movements_record(requests=[receive(site, sku, 5)])
    return site, sku


def movement_insert_sql(occurred_at: str) -> None:
    """Insert a movement by SQL, as a script or an old bug could, at `occurred_at`."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO inventory_ops_movement (site_id, sku_id, kind, on_hand_delta, "
            "reserved_delta, on_hand_after, reserved_after, occurred_at, recorded_at, cause, "
            "cause_ref) SELECT site_id, sku_id, 'received', 0, 0, on_hand, reserved, %s, now(), "
            "'feed_event', 'legacy:1' FROM inventory_ops_stocklevel",
            [occurred_at],
        )


@pytest.mark.parametrize("occurred_at", [FAR, "0001-01-01T00:00:00+14:00", "2600-01-01T00:00Z"])
def test_the_database_refuses_an_event_time_outside_what_is_stored(
    postgres_only, stocked, occurred_at
):
    # given a stocked level
    before = Movement.objects.count()
    # when a movement or a feed's freshness is written by SQL with a time out of range
    with pytest.raises(IntegrityError), transaction.atomic():
        movement_insert_sql(occurred_at)
    source, _ = source_make()
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "UPDATE ingest_feedsource SET newest_applied_occurred_at = %s WHERE id = %s",
            [occurred_at, source.pk],
        )
    # then nothing was stored
    assert Movement.objects.count() == before
    assert FeedSource.objects.get(pk=source.pk).newest_applied_occurred_at is None


def test_the_ledger_writer_cannot_store_a_time_outside_the_range_either(stocked):
    # given a stocked level; when the ledger's own writer is asked for a year-2600 movement
    site, sku = stocked
    # then the database refuses it (COPY on PostgreSQL raises psycopg's own error)
    with (
        pytest.raises((IntegrityError, psycopg.IntegrityError), match="storable"),
        transaction.atomic(),
    ):
        movements_record(
            requests=[receive(site, sku, 1, occurred_at=datetime(2600, 1, 1, tzinfo=UTC))]
        )
    # and the ledger still adds up
    call_command("check_ledger", stdout=StringIO())


def test_rows_stored_before_the_constraints_keep_every_read_path_up_and_are_reported(
    client, postgres_only, stocked
):
    # given a database from before the constraints, already holding year-10000 times
    source, _ = source_make()
    with connection.cursor() as cursor:
        cursor.execute(
            "ALTER TABLE inventory_ops_movement DROP CONSTRAINT movement_occurred_at_storable"
        )
        cursor.execute(
            "ALTER TABLE ingest_feedsource DROP CONSTRAINT feed_source_newest_applied_storable"
        )
        cursor.execute(
            "UPDATE ingest_feedsource SET newest_applied_occurred_at = %s WHERE id = %s",
            [FAR, source.pk],
        )
    movement_insert_sql(FAR)
    bad_id = Movement.objects.order_by("-pk").values_list("pk", flat=True).first()
    # when someone opens any page over them
    client.force_login(user_make(is_staff=True, is_superuser=True))
    for path in READ_PATHS:
        # then it answers
        assert client.get(path).status_code == 200, path
    # and the live view the WebSocket sends and the alert rules evaluate over them
    for window in ("1h", "30d"):
        json.dumps(scope_view_build(Scope(site=None, window=window)))
        json.dumps(scope_view_build(Scope(site="north", window=window)))
    alert_rules_default_create()
    alerts_evaluate()
    # and the movement reads as a far sentinel, recognisably not a real time
    assert Movement.objects.get(pk=bad_id).occurred_at == datetime(9999, 1, 1, tzinfo=UTC)
    # and check_ledger lists the rows it cannot read and fails
    out = StringIO()
    with pytest.raises(CommandError, match=r"2 row\(s\) hold a time outside 1900-01-01"):
        call_command("check_ledger", stdout=out)
    assert (
        f"UNREADABLE inventory_ops_movement #{bad_id}: occurred_at = 10000-01-01 13:59:59+00"
        in (out.getvalue())
    )
    assert "UNREADABLE ingest_feedsource" in out.getvalue()
