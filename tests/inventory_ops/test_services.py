import threading
import time
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.utils import timezone

from ledger.exceptions import InvalidMovement, UnknownSite, UnknownSku
from ledger.models import Movement, MovementKind, StockLevel
from ledger.services import MovementRequest, movements_record
from tests.builders import receive, site_make, sku_make

pytestmark = pytest.mark.django_db


def level_of(site, sku) -> tuple[int, int]:
    level = StockLevel.objects.get(site=site, sku=sku)
    return level.on_hand, level.reserved


def test_receipt_creates_the_level_and_one_movement():
    site, sku = site_make(), sku_make()

    applied = movements_record(requests=[receive(site, sku, 12, cause_ref="wms:r-1")])

    assert level_of(site, sku) == (12, 0)
    movement = Movement.objects.get()
    assert (movement.kind, movement.on_hand_delta, movement.on_hand_after) == ("received", 12, 12)
    assert movement.cause_ref == "wms:r-1"
    assert applied[0].on_hand_before == 0


def test_requests_apply_in_order_and_a_count_sets_on_hand_to_what_was_counted():
    site, sku = site_make(), sku_make()
    now = timezone.now()

    applied = movements_record(
        requests=[
            receive(site, sku, 10),
            MovementRequest(
                site=site.code,
                sku=sku.code,
                kind=MovementKind.ORDER_RESERVED,
                reserved_delta=3,
                occurred_at=now,
            ),
            MovementRequest(
                site=site.code,
                sku=sku.code,
                kind=MovementKind.COUNTED,
                counted_qty=7,
                occurred_at=now,
            ),
        ]
    )

    assert level_of(site, sku) == (7, 3)
    count = applied[2]
    assert (count.on_hand_before, count.on_hand_delta) == (10, -3)
    assert [m.on_hand_after for m in Movement.objects.order_by("id")] == [10, 10, 7]


def test_transfer_moves_stock_between_sites_in_one_call():
    north, south, sku = site_make(), site_make(), sku_make()
    movements_record(requests=[receive(north, sku, 20)])
    now = timezone.now()

    movements_record(
        requests=[
            MovementRequest(
                site=north.code,
                sku=sku.code,
                kind=MovementKind.TRANSFER_OUT,
                on_hand_delta=-8,
                occurred_at=now,
            ),
            MovementRequest(
                site=south.code,
                sku=sku.code,
                kind=MovementKind.TRANSFER_IN,
                on_hand_delta=8,
                occurred_at=now,
            ),
        ]
    )

    assert level_of(north, sku) == (12, 0)
    assert level_of(south, sku) == (8, 0)


def test_unknown_sku_in_the_middle_of_a_bulk_call_writes_nothing():
    site, sku = site_make(), sku_make()
    movements_record(requests=[receive(site, sku, 5)])
    now = timezone.now()
    requests = [receive(site, sku, 1) for _ in range(50)]
    requests.insert(
        25,
        MovementRequest(
            site=site.code,
            sku="NO-SUCH-SKU",
            kind=MovementKind.RECEIVED,
            on_hand_delta=1,
            occurred_at=now,
        ),
    )

    with pytest.raises(UnknownSku, match="NO-SUCH-SKU"):
        movements_record(requests=requests)

    assert Movement.objects.count() == 1
    assert level_of(site, sku) == (5, 0)


def test_unknown_site_names_the_code_and_writes_nothing():
    sku = sku_make()

    with pytest.raises(UnknownSite, match="atlantis"):
        movements_record(
            requests=[
                MovementRequest(
                    site="atlantis",
                    sku=sku.code,
                    kind=MovementKind.RECEIVED,
                    on_hand_delta=1,
                    occurred_at=timezone.now(),
                )
            ]
        )

    assert not Movement.objects.exists()
    assert not StockLevel.objects.exists()


def test_a_failure_after_the_ledger_write_rolls_the_whole_call_back():
    site, sku = site_make(), sku_make()

    with pytest.raises(RuntimeError), transaction.atomic():
        movements_record(requests=[receive(site, sku, 4)])
        raise RuntimeError("the caller's next step fails")

    assert not Movement.objects.exists()
    assert not StockLevel.objects.filter(on_hand__gt=0).exists()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kind": "teleported", "on_hand_delta": 1}, "unknown movement kind 'teleported'"),
        (
            {"kind": MovementKind.RECEIVED, "on_hand_delta": 1, "cause": "magic"},
            "unknown movement cause 'magic'",
        ),
        ({"kind": MovementKind.COUNTED, "counted_qty": -1}, "a count needs counted_qty >= 0"),
        ({"kind": MovementKind.COUNTED}, "a count needs counted_qty >= 0"),
        (
            {"kind": MovementKind.COUNTED, "counted_qty": 3, "on_hand_delta": 1},
            "a count gives counted_qty, not deltas",
        ),
        (
            {"kind": MovementKind.RECEIVED, "on_hand_delta": 1, "counted_qty": 3},
            "counted_qty is only for counts",
        ),
    ],
)
def test_invalid_requests_are_refused_before_anything_is_written(fields, message):
    site, sku = site_make(), sku_make()

    with pytest.raises(InvalidMovement) as refusal:
        movements_record(
            requests=[
                MovementRequest(site=site.code, sku=sku.code, occurred_at=timezone.now(), **fields)
            ]
        )

    # the whole reason, as the caller passes it on
    assert str(refusal.value) == message
    assert not Movement.objects.exists()


def test_a_count_of_zero_empties_the_shelf():
    # given 4 on hand
    site, sku = site_make(), sku_make()
    movements_record(requests=[receive(site, sku, 4)])

    # when a count finds none
    movements_record(
        requests=[
            MovementRequest(
                site=site.code,
                sku=sku.code,
                kind=MovementKind.COUNTED,
                counted_qty=0,
                occurred_at=timezone.now(),
            )
        ]
    )

    # then on hand is 0, through a movement of -4
    assert level_of(site, sku) == (0, 0)
    assert Movement.objects.filter(kind=MovementKind.COUNTED).get().on_hand_delta == -4


def test_the_database_refuses_to_update_a_movement():
    site, sku = site_make(), sku_make()
    movements_record(requests=[receive(site, sku, 3)])

    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        Movement.objects.update(on_hand_delta=300)

    assert Movement.objects.get().on_hand_delta == 3


def test_the_database_refuses_to_delete_a_movement(postgres_only):
    site, sku = site_make(), sku_make()
    movements_record(requests=[receive(site, sku, 3)])

    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        Movement.objects.all().delete()

    assert Movement.objects.count() == 1


def test_one_level_per_site_and_sku():
    site, sku = site_make(), sku_make()
    StockLevel.objects.create(site=site, sku=sku)

    with pytest.raises(IntegrityError), transaction.atomic():
        StockLevel.objects.create(site=site, sku=sku)


def test_check_ledger_passes_after_service_writes_and_names_a_tampered_level(capsys):
    site, sku = site_make("hub-1"), sku_make("APPLE")
    other = sku_make("PEAR")
    movements_record(requests=[receive(site, sku, 9), receive(site, other, 2)])
    call_command("check_ledger")
    assert "ledger OK: 2 stock levels" in capsys.readouterr().out

    StockLevel.objects.filter(sku=sku).update(on_hand=11)  # a write that bypassed the services

    with pytest.raises(Exception, match="1 of 2 stock levels differ") as raised:
        call_command("check_ledger")
    assert "hub-1/APPLE: level on_hand 11 vs ledger 9" in capsys.readouterr().out
    assert type(raised.value).__name__ == "CommandError"


def test_check_ledger_names_a_movement_whose_site_is_missing(capsys):
    # given a movement written around the services, naming a site that does not exist (the
    # ledger has no database foreign keys: the services are what keep it whole)
    site, sku = site_make("hub-1"), sku_make("APPLE")
    movements_record(requests=[receive(site, sku, 3)])
    Movement.objects.bulk_create(
        [
            Movement(
                site_id=site.pk + 1000,
                sku=sku,
                kind="received",
                on_hand_delta=1,
                on_hand_after=1,
                reserved_after=0,
                occurred_at=timezone.now(),
                cause="feed_event",
            )
        ]
    )
    # then the check fails and names it
    with pytest.raises(Exception, match="1 of 1 stock levels differ"):
        call_command("check_ledger")
    assert f"<missing site #{site.pk + 1000}>/APPLE" in capsys.readouterr().out


def test_late_movements_keep_their_event_time():
    site, sku = site_make(), sku_make()
    yesterday = timezone.now() - timedelta(days=1)

    movements_record(requests=[receive(site, sku, 1, occurred_at=yesterday)])

    movement = Movement.objects.get()
    assert movement.occurred_at == yesterday
    assert movement.recorded_at > yesterday


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_writers_receiving_a_sku_no_level_exists_for_yet_both_count(postgres_only):
    # given a site and a SKU with no stock level yet
    site, sku = site_make(), sku_make()
    first_written = threading.Event()

    def first_receipt():
        try:
            with transaction.atomic():
                # creates the level, not yet committed
                movements_record(requests=[receive(site, sku, 3)])
                first_written.set()
                # hold the transaction open until the second writer waits on the new level
                with connection.cursor() as cursor:
                    for _ in range(200):
                        cursor.execute(
                            "SELECT count(*) FROM pg_stat_activity "
                            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                        )
                        if cursor.fetchone()[0]:
                            break
                        time.sleep(0.05)
        finally:
            connection.close()

    writer = threading.Thread(target=first_receipt)
    writer.start()
    assert first_written.wait(20)

    # when a second receipt of it is recorded before the first commits
    movements_record(requests=[receive(site, sku, 4)])
    writer.join(timeout=20)
    assert not writer.is_alive(), "the first receipt is stuck"

    # then it waited for the first and both count, on the one level
    assert level_of(site, sku) == (7, 0)
    assert Movement.objects.filter(site=site, sku=sku).count() == 2


def test_levels_order_by_available_units_and_still_read_their_available():
    # given one level with more on hand but less available than another
    site, crowded, plain = site_make(), sku_make("CROWDED"), sku_make("PLAIN")
    movements_record(
        requests=[
            receive(site, crowded, 10, reserved_delta=8),
            receive(site, plain, 5),
        ]
    )

    levels = list(StockLevel.objects.with_available_units().order_by("available_units"))

    assert [(level.sku.code, level.available_units) for level in levels] == [
        ("CROWDED", 2),
        ("PLAIN", 5),
    ]
    assert [level.available for level in levels] == [2, 5]
