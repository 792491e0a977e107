"""For random event streams and random instants T, the KPIs and stock levels read `as_of=T`
equal those computed from only the events with `occurred_at <= T`, taken in a random order.

The stream is recorded as ingest records it (movements through `movements_record`, facts
through the rollups), in arrival order, which is not time order: late events change the past.
The reference takes the movements as the ledger recorded them (a count's difference is the
one it made when applied), keeps those at or before T, shuffles them, and computes every KPI
by its definition (`Reference` of the KPI property test), the stock KPIs from the levels at T.
"""

import datetime as dt
import random
from decimal import Decimal

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kpis.as_of import levels_at
from kpis.reads import kpis_compute
from kpis.rollups import DeliveryFact, OrderLineFact, SnapshotFact, rollups_facts_record
from kpis.windows import WINDOWS
from ledger.models import Movement as LedgerMovement
from ledger.models import MovementKind
from ledger.services import MovementRequest, movements_record
from tests.builders import site_make, sku_make
from tests.dashboards.test_kpis_property import (
    REORDER_POINTS,
    SITES,
    SKUS,
    Delivery,
    Reference,
    _assert_same,
    _seconds,
    quantities,
    site_names,
    sku_names,
)

SPAN_S = 34 * 86400

instants = st.tuples(
    st.integers(min_value=-SPAN_S, max_value=-1), st.integers(min_value=0, max_value=999_999)
)
# Several events share an hour or a minute: the checkpoints and the edges of the windows.
clustered = st.tuples(
    st.integers(min_value=-7300, max_value=-3500), st.integers(min_value=0, max_value=999_999)
)
moments = st.one_of(instants, clustered)


def _stock_event(kind: str, amounts):
    return st.tuples(st.just(kind), site_names, sku_names, amounts, moments)


events = st.one_of(
    _stock_event("received", quantities),
    _stock_event("adjusted", st.integers(min_value=-15, max_value=15).filter(bool)),
    _stock_event("reserve", quantities),
    _stock_event("dispatch", quantities),
    _stock_event("counted", quantities),
    st.tuples(
        st.just("delivered"),
        site_names,
        st.one_of(st.none(), st.integers(min_value=1, max_value=86400)),
        st.booleans(),
        st.integers(min_value=0, max_value=5000),
        moments,
    ),
    st.tuples(
        st.just("snapshot"),
        site_names,
        st.dictionaries(sku_names, st.integers(min_value=0, max_value=20), min_size=1),
        moments,
    ),
)
# T: anywhere, or exactly at an event (index into the stream) give or take a microsecond.
as_of_draws = st.one_of(
    st.tuples(st.just("free"), moments),
    st.tuples(st.just("event"), st.integers(min_value=0), st.sampled_from([-1, 0, 1])),
)


def _record(stream, base, sites, skus) -> None:
    for event in stream:
        kind = event[0]
        seconds, micros = event[-1]
        at = base + dt.timedelta(seconds=seconds, microseconds=micros)
        site = sites[event[1]]
        if kind == "delivered":
            _, _, created_s, accurate, cost_cents, _ = event
            created = None if created_s is None else at - dt.timedelta(seconds=created_s)
            rollups_facts_record(
                deliveries=[DeliveryFact(site.id, at, accurate, _money(cost_cents), created)]
            )
            continue
        if kind == "snapshot":
            lines = {skus[code].id: qty for code, qty in event[2].items()}
            rollups_facts_record(snapshots=[SnapshotFact(site.id, at, lines)])
            continue
        sku = skus[event[2]]
        amount = event[3]
        fields = {"site": site.code, "sku": sku.code, "occurred_at": at}
        if kind == "received":
            fields |= {"kind": MovementKind.RECEIVED, "on_hand_delta": amount}
        elif kind == "adjusted":
            fields |= {"kind": MovementKind.ADJUSTED, "on_hand_delta": amount}
        elif kind == "reserve":
            fields |= {"kind": MovementKind.ORDER_RESERVED, "reserved_delta": amount}
        elif kind == "dispatch":
            fields |= {
                "kind": MovementKind.ORDER_DISPATCHED,
                "on_hand_delta": -amount,
                "reserved_delta": -amount,
            }
        else:
            fields |= {"kind": MovementKind.COUNTED, "counted_qty": amount}
        movements_record(requests=[MovementRequest(**fields)])
        if kind == "reserve":
            rollups_facts_record(
                order_lines=[OrderLineFact(site.id, sku.id, at, amount, f"o{seconds}")]
            )


def _money(cents: int) -> Decimal:
    return Decimal(cents) / 100


def _reference_at(stream, base, as_of: dt.datetime, seed: int) -> Reference:
    """Everything known at `as_of`, from the ledger's rows and the stream's facts."""
    reference = Reference()
    moved = list(
        LedgerMovement.objects.filter(occurred_at__lte=as_of).values_list(
            "site__code", "sku__code", "kind", "on_hand_delta", "reserved_delta", "occurred_at"
        )
    )
    random.Random(seed).shuffle(moved)  # applied in any order
    for site, sku, kind, on_hand, reserved, at in moved:
        reference.move(site, sku, kind, at, on_hand=on_hand, reserved=reserved)
    for event in stream:
        seconds, micros = event[-1]
        at = base + dt.timedelta(seconds=seconds, microseconds=micros)
        if at > as_of:
            continue
        kind, site = event[0], event[1]
        if kind == "reserve":
            pair = (site, event[2])
            if pair not in reference.demand or reference.demand[pair] < at:
                reference.demand[pair] = at
        elif kind == "delivered":
            _, _, created_s, accurate, cost_cents, _ = event
            duration = None if created_s is None else _seconds(dt.timedelta(seconds=created_s))
            reference.deliveries.append(Delivery(site, at, accurate, _money(cost_cents), duration))
        elif kind == "snapshot":
            previous = reference.snapshots.get(site)
            if previous is None or previous[0] <= at:  # the later recorded wins a tie
                held = {code: reference.on_hand.get((site, code), 0) for code in event[2]}
                reference.snapshots[site] = (
                    at,
                    len(event[2]),
                    sum(1 for code, qty in event[2].items() if qty != held[code]),
                    sum(abs(qty - held[code]) for code, qty in event[2].items()),
                )
    return reference


def _as_of(draw, stream, base) -> dt.datetime:
    if draw[0] == "free":
        seconds, micros = draw[1]
        return base + dt.timedelta(seconds=seconds, microseconds=micros)
    _, index, nudge = draw
    seconds, micros = stream[index % len(stream)][-1]
    return base + dt.timedelta(seconds=seconds, microseconds=micros + nudge)


@pytest.mark.slow
@pytest.mark.django_db
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    stream=st.lists(events, min_size=1, max_size=25),
    draws=st.lists(as_of_draws, min_size=1, max_size=3),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_as_of_equals_the_kpis_and_stock_of_the_events_up_to_it(stream, draws, seed):
    with transaction.atomic():
        base = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=5)
        sites = {code: site_make(code) for code in SITES}
        skus = {
            code: sku_make(code, unit_cost=cost, reorder_point=REORDER_POINTS[code])
            for code, cost in SKUS.items()
        }
        _record(stream, base, sites, skus)
        for draw in draws:
            as_of = _as_of(draw, stream, base)
            reference = _reference_at(stream, base, as_of, seed)
            levels = {
                (site_id, sku_id): (level.on_hand, level.reserved)
                for (site_id, sku_id), level in levels_at(at=as_of).items()
            }
            codes = {site.id: code for code, site in sites.items()}
            sku_codes = {sku.id: code for code, sku in skus.items()}
            assert {
                (codes[site_id], sku_codes[sku_id]): level
                for (site_id, sku_id), level in levels.items()
            } == {
                pair: (reference.on_hand[pair], reference.reserved[pair])
                for pair in reference.on_hand
            }
            for window, window_s in WINDOWS.items():
                for scope, names in [(None, SITES), *((code, (code,)) for code in SITES)]:
                    actual = kpis_compute(site=scope, window=window, as_of=as_of)
                    expected = reference.kpis(names, window_s, as_of)
                    _assert_same(actual, expected, f"{scope} {window} as of {as_of}")
                    assert "feeds" not in actual
        transaction.set_rollback(True)
