"""Eight writers on the same few stock levels at once: no deadlock reaches a caller, and the
ledger still adds up."""

import random
import threading

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.models import Sum
from django.utils import timezone

from ledger.models import Movement, MovementKind, StockLevel
from ledger.services import MovementRequest, movements_record
from tests.builders import site_make, sku_make

WRITERS = 8
CALLS_PER_WRITER = 25


def random_call(rng: random.Random, sites: list[str], skus: list[str]) -> list[MovementRequest]:
    """A bulk call mixing receipts, reservations, counts and transfers in both directions."""
    now = timezone.now()
    requests = []
    for _ in range(rng.randint(1, 6)):
        sku = rng.choice(skus)
        choice = rng.random()
        if choice < 0.4:
            origin, destination = rng.sample(sites, 2)  # either direction between the two sites
            qty = rng.randint(1, 5)
            requests += [
                MovementRequest(
                    site=origin,
                    sku=sku,
                    kind=MovementKind.TRANSFER_OUT,
                    on_hand_delta=-qty,
                    occurred_at=now,
                ),
                MovementRequest(
                    site=destination,
                    sku=sku,
                    kind=MovementKind.TRANSFER_IN,
                    on_hand_delta=qty,
                    occurred_at=now,
                ),
            ]
        elif choice < 0.7:
            requests.append(
                MovementRequest(
                    site=rng.choice(sites),
                    sku=sku,
                    kind=MovementKind.RECEIVED,
                    on_hand_delta=rng.randint(1, 9),
                    occurred_at=now,
                )
            )
        elif choice < 0.9:
            requests.append(
                MovementRequest(
                    site=rng.choice(sites),
                    sku=sku,
                    kind=MovementKind.ORDER_RESERVED,
                    reserved_delta=rng.randint(1, 3),
                    occurred_at=now,
                )
            )
        else:
            requests.append(
                MovementRequest(
                    site=rng.choice(sites),
                    sku=sku,
                    kind=MovementKind.COUNTED,
                    counted_qty=rng.randint(0, 40),
                    occurred_at=now,
                )
            )
    rng.shuffle(requests)  # lock order must not depend on the order asked
    return requests


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_eight_concurrent_writers_never_deadlock_and_the_ledger_adds_up(capsys):
    sites = [site_make("north").code, site_make("south").code]
    skus = [sku_make("BOLT").code, sku_make("NUT").code, sku_make("GEAR").code]
    barrier = threading.Barrier(WRITERS)
    errors: list[BaseException] = []
    applied_counts = [0] * WRITERS

    def writer(index: int) -> None:
        rng = random.Random(index)
        try:
            barrier.wait()
            for _ in range(CALLS_PER_WRITER):
                applied_counts[index] += len(
                    movements_record(requests=random_call(rng, sites, skus))
                )
        except BaseException as error:  # reported to the test below, not swallowed
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=writer, args=(index,)) for index in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert not any(thread.is_alive() for thread in threads), "a writer is stuck"
    assert not errors, errors
    assert Movement.objects.count() == sum(applied_counts)
    call_command("check_ledger")
    assert "ledger OK" in capsys.readouterr().out
    # Each movement's on_hand_after is the running balance of its level: writers really queued
    # on the row lock (a count computed from a stale value would break this).
    running: dict[tuple[int, int], tuple[int, int]] = {}
    for movement in Movement.objects.order_by("id"):
        key = (movement.site_id, movement.sku_id)
        on_hand, reserved = running.get(key, (0, 0))
        on_hand, reserved = on_hand + movement.on_hand_delta, reserved + movement.reserved_delta
        assert (movement.on_hand_after, movement.reserved_after) == (on_hand, reserved), movement.id
        running[key] = (on_hand, reserved)
    totals = Movement.objects.aggregate(
        on_hand=Sum("on_hand_delta"), reserved=Sum("reserved_delta")
    )
    assert StockLevel.objects.aggregate(total=Sum("on_hand"))["total"] == totals["on_hand"]
    assert StockLevel.objects.aggregate(total=Sum("reserved"))["total"] == totals["reserved"]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_deadlock_between_two_jobs_is_retried_not_raised(postgres_only):
    """Two jobs lock the same two levels in opposite orders across separate calls; PostgreSQL
    aborts one with deadlock_detected and run_atomic_with_retry runs it again."""
    from core.db import run_atomic_with_retry

    site = site_make("west")
    first, second = sku_make("LEFT"), sku_make("RIGHT")
    movements_record(
        requests=[receive_request(site.code, first.code), receive_request(site.code, second.code)]
    )
    both_hold_their_first_lock = threading.Barrier(2, timeout=10)
    attempts = {"a": 0, "b": 0}
    errors: list[BaseException] = []

    def job(name: str, order: tuple[str, str]) -> None:
        def work():
            attempts[name] += 1
            movements_record(requests=[receive_request(site.code, order[0])])
            if attempts[name] == 1:
                both_hold_their_first_lock.wait()
            movements_record(requests=[receive_request(site.code, order[1])])

        try:
            run_atomic_with_retry(work)
        except BaseException as error:
            errors.append(error)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=job, args=("a", (first.code, second.code))),
        threading.Thread(target=job, args=("b", (second.code, first.code))),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not any(thread.is_alive() for thread in threads), "a job is stuck"
    assert not errors, errors
    assert sorted(attempts.values()) == [1, 2]  # exactly one of them was retried
    assert StockLevel.objects.get(sku=first).on_hand == 3
    assert StockLevel.objects.get(sku=second).on_hand == 3


def receive_request(site: str, sku: str) -> MovementRequest:
    return MovementRequest(
        site=site, sku=sku, kind=MovementKind.RECEIVED, on_hand_delta=1, occurred_at=timezone.now()
    )
