"""Random event streams give the same KPIs three ways: the incremental rollups, `rebuild_kpis`,
and a plain reference computation over the raw events written here; the trouble counters
behind the "now" KPIs match a count of the stock status rows, before and after the rebuild.

The stream is cut into random batches, recorded as ingest records a batch: its movements in one
`movements_record` call, then its facts, each snapshot compared with the stock at its place in
the batch (`snapshots_at_their_position`, the ingest code's own).
"""

import datetime as dt
import io
from dataclasses import dataclass
from decimal import Decimal

import numpy
import pytest
from django.core.management import call_command
from django.db import transaction
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ingest.order_plan import snapshots_at_their_position
from kpis.models import SnapshotRecord, UnitCostChange
from kpis.reads import kpis_compute
from kpis.rollups import DeliveryFact, OrderLineFact, SnapshotFact, rollups_facts_record
from kpis.windows import WINDOWS
from ledger.models import MovementKind, SiteReorderPoint, Sku
from ledger.services import MovementRequest, movements_record
from tests.builders import site_make, sku_make
from tests.dashboards.kpi_helpers import counted_from_status, counters, now_mid_minute

SITES = ("north", "south")
SKUS = {"A": Decimal("2.50"), "B": Decimal("0.3333"), "C": Decimal("12")}
REORDER_POINTS = {"A": 5, "B": None, "C": 2}
SPAN_S = 32 * 86400

# Seconds from the stream's base; `now` falls 150-210 s after it. Some instants are drawn near
# the windows' starts, where a read folds raw facts (the start's minute), which a uniform draw
# over 32 days would almost never reach.
near_a_window_start = st.sampled_from(sorted(WINDOWS.values())).flatmap(
    lambda window_s: st.integers(min_value=145 - window_s, max_value=215 - window_s)
)
instants = st.tuples(
    st.one_of(st.integers(min_value=-SPAN_S, max_value=120), near_a_window_start),
    st.integers(min_value=0, max_value=999_999),
)
site_names = st.sampled_from(SITES)
sku_names = st.sampled_from(sorted(SKUS))
quantities = st.integers(min_value=1, max_value=20)

events = st.one_of(
    st.tuples(st.just("received"), site_names, sku_names, quantities, instants),
    st.tuples(
        st.just("adjusted"),
        site_names,
        sku_names,
        st.integers(min_value=-15, max_value=15).filter(bool),
        instants,
    ),
    st.tuples(st.just("reserve"), site_names, sku_names, quantities, instants),
    st.tuples(st.just("dispatch"), site_names, sku_names, quantities, instants),
    st.tuples(st.just("returned"), site_names, sku_names, quantities, instants),
    st.tuples(
        st.just("counted"), site_names, sku_names, st.integers(min_value=0, max_value=20), instants
    ),
    st.tuples(
        st.just("delivered"),
        site_names,
        st.one_of(st.none(), st.integers(min_value=-600, max_value=3 * 86400)),
        st.booleans(),
        st.decimals(min_value=0, max_value=50, places=2),
        instants,
    ),
    st.tuples(
        st.just("snapshot"),
        site_names,
        st.dictionaries(sku_names, st.integers(min_value=0, max_value=20), min_size=1),
        instants,
    ),
    st.tuples(st.just("cost"), sku_names, st.decimals(min_value=0, max_value=30, places=4)),
    # A reorder point change: the SKU's default (site None) or a site's own (None: removed).
    st.tuples(
        st.just("reorder"),
        st.one_of(st.none(), site_names),
        sku_names,
        st.one_of(st.none(), st.integers(min_value=-3, max_value=12)),
    ),
)


@dataclass
class Movement:
    site: str
    sku: str
    kind: str
    delta: int
    at: dt.datetime


@dataclass
class Delivery:
    site: str
    at: dt.datetime
    accurate: bool
    cost: Decimal
    duration_s: Decimal | None


class Reference:
    """The KPIs computed straight from the raw events, as docs/kpis.md words them."""

    def __init__(self):
        self.on_hand: dict[tuple[str, str], int] = {}
        self.reserved: dict[tuple[str, str], int] = {}
        self.movements: list[Movement] = []
        self.deliveries: list[Delivery] = []
        self.demand: dict[tuple[str, str], dt.datetime] = {}
        self.snapshots: dict[str, tuple[dt.datetime, int, int, int]] = {}
        # every snapshot in arrival order: (site, [(sku, qty, on_hand compared with), ...])
        self.snapshot_lines: list[tuple[str, list[tuple[str, int, int]]]] = []
        self.cost_changes: dict[str, list[tuple[dt.datetime, Decimal]]] = {s: [] for s in SKUS}
        self.reorder_points: dict[str, int | None] = dict(REORDER_POINTS)
        self.site_reorder_points: dict[tuple[str, str], int] = {}

    def reorder_point(self, pair: tuple[str, str]) -> int | None:
        if pair in self.site_reorder_points:
            return self.site_reorder_points[pair]
        return self.reorder_points[pair[1]]

    def cost(self, sku: str, at: dt.datetime) -> Decimal:
        cost = SKUS[sku]
        for effective, new in self.cost_changes[sku]:
            if effective <= at:
                cost = new
        return cost

    def move(self, site, sku, kind, at, on_hand=0, reserved=0, counted=None):
        pair = (site, sku)
        if counted is not None:
            on_hand = counted - self.on_hand.get(pair, 0)
        self.on_hand[pair] = self.on_hand.get(pair, 0) + on_hand
        self.reserved[pair] = self.reserved.get(pair, 0) + reserved
        self.movements.append(Movement(site, sku, kind, on_hand, at))

    def value(self, sites, at):
        return sum(
            (
                m.delta * self.cost(m.sku, at)
                for m in self.movements
                if m.site in sites and m.at <= at
            ),
            Decimal(0),
        )

    def kpis(self, sites, window_s, now):
        start = now - dt.timedelta(seconds=window_s)
        inside = [m for m in self.movements if m.site in sites and start < m.at <= now]
        cogs = sum(
            (
                -m.delta * self.cost(m.sku, m.at)
                for m in inside
                if m.kind in (MovementKind.ORDER_DISPATCHED, MovementKind.ORDER_RETURNED)
            ),
            Decimal(0),
        )
        average = (self.value(sites, start) + self.value(sites, now)) / 2
        counts = [m for m in inside if m.kind == MovementKind.COUNTED]
        mismatched = [m for m in counts if m.delta != 0]
        delivered = [d for d in self.deliveries if d.site in sites and start < d.at <= now]
        durations = [float(d.duration_s) for d in delivered if d.duration_s is not None]
        pairs = [pair for pair in set(self.on_hand) | set(self.demand) if pair[0] in sites]
        available = {p: self.on_hand.get(p, 0) - self.reserved.get(p, 0) for p in pairs}
        latest = [self.snapshots[s] for s in sites if s in self.snapshots]
        lines = sum(snap[1] for snap in latest)
        return {
            "inventory_turnover": None
            if average == 0
            else float(cogs / average * Decimal(365 * 86400) / Decimal(window_s)),
            "order_accuracy": None
            if not delivered
            else float(Decimal(sum(d.accurate for d in delivered)) / len(delivered)),
            "deliveries": len(delivered),
            "stock_mismatch_rate": None
            if not counts
            else float(Decimal(len(mismatched)) / len(counts)),
            "counts": len(counts),
            "mismatch_units": sum(abs(m.delta) for m in mismatched),
            "mismatch_value": float(
                sum((abs(m.delta) * self.cost(m.sku, m.at) for m in mismatched), Decimal(0))
            ),
            "cost_per_shipment": None
            if not delivered
            else float(sum(d.cost for d in delivered) / len(delivered)),
            "fulfillment_p50_s": float(numpy.percentile(durations, 50)) if durations else None,
            "fulfillment_p90_s": float(numpy.percentile(durations, 90)) if durations else None,
            "stockouts": sum(
                1
                for p in pairs
                if available[p] <= 0
                and p in self.demand
                and self.demand[p] > now - dt.timedelta(days=30)
            ),
            "negative_stock": sum(1 for p in pairs if self.on_hand.get(p, 0) < 0),
            "below_reorder_point": sum(
                1
                for p in pairs
                if p in self.on_hand
                and self.reorder_point(p) is not None
                and available[p] < self.reorder_point(p)
            ),
            "reconciliation_skew": None
            if not lines
            else float(Decimal(sum(snap[2] for snap in latest)) / lines),
            "reconciliation_skew_units": None if not lines else sum(snap[3] for snap in latest),
        }


def _seconds(duration: dt.timedelta) -> Decimal:
    return Decimal(duration // dt.timedelta(microseconds=1)) / 10**6


class Batch:
    """What ingest gathers from one batch (or group) before recording it in one go."""

    def __init__(self):
        self.requests: list[MovementRequest] = []
        self.deliveries: list[DeliveryFact] = []
        self.order_lines: list[OrderLineFact] = []
        self.snapshots: list[SnapshotFact] = []
        self.snapshot_positions: list[int] = []

    def record(self) -> None:
        """The movements first, then the facts, as `ingest.processing.events_apply` does."""
        applied = movements_record(requests=self.requests)
        rollups_facts_record(
            deliveries=self.deliveries,
            order_lines=self.order_lines,
            snapshots=snapshots_at_their_position(
                snapshots=self.snapshots, positions=self.snapshot_positions, applied=applied
            ),
        )
        self.__init__()


def _apply(stream, base: dt.datetime, reference: Reference, sites, skus, batch_ends) -> None:
    """Apply the stream as ingest would: in arrival order, each event id once, in batches
    ending after the positions in `batch_ends` (and before a change of standard cost or of a
    reorder point, which an admin saves in a transaction of its own)."""
    seen = set()
    batch = Batch()
    for position, (event_id, event) in enumerate(stream):
        if position in batch_ends:
            batch.record()
        if event_id in seen:  # a duplicate: ingest answers "duplicate" and changes nothing
            continue
        seen.add(event_id)
        kind = event[0]
        if kind == "cost":
            batch.record()
            _, sku_code, new_cost = event
            sku = skus[sku_code]
            if new_cost == Sku.objects.get(pk=sku.pk).unit_cost:
                continue
            sku.unit_cost = new_cost
            sku.save()
            change = UnitCostChange.objects.filter(sku_id=sku.pk).latest("id")
            reference.cost_changes[sku_code].append((change.effective_at, new_cost))
            continue
        if kind == "reorder":
            batch.record()  # an admin's save, in a transaction of its own
            _, site_code, sku_code, point = event
            _reorder_point_set(site_code, sku_code, point, reference, sites, skus)
            continue
        seconds, micros = event[-1]
        at = base + dt.timedelta(seconds=seconds, microseconds=micros)
        site = sites[event[1]]
        if kind == "delivered":
            _, _, created_offset, accurate, cost, _ = event
            created = None if created_offset is None else at - dt.timedelta(seconds=created_offset)
            batch.deliveries.append(DeliveryFact(site.id, at, accurate, cost, created))
            reference.deliveries.append(
                Delivery(
                    site.code,
                    at,
                    accurate,
                    cost,
                    None if created is None else _seconds(at - created),
                )
            )
            continue
        if kind == "snapshot":
            lines = {skus[code].id: qty for code, qty in event[2].items()}
            batch.snapshots.append(SnapshotFact(site.id, at, lines))
            batch.snapshot_positions.append(len(batch.requests))
            # Compared with on_hand at the snapshot's place in the stream: everything before it,
            # the earlier events of its own batch included, and nothing after it.
            held = {code: reference.on_hand.get((site.code, code), 0) for code in event[2]}
            reference.snapshot_lines.append(
                (site.code, [(code, qty, held[code]) for code, qty in sorted(event[2].items())])
            )
            previous = reference.snapshots.get(site.code)
            if previous is None or previous[0] <= at:
                reference.snapshots[site.code] = (
                    at,
                    len(event[2]),
                    sum(1 for code, qty in event[2].items() if qty != held[code]),
                    sum(abs(qty - held[code]) for code, qty in event[2].items()),
                )
            continue
        sku_code, amount = event[2], event[3]
        request = {"site": site.code, "sku": sku_code, "occurred_at": at}
        if kind == "received":
            deltas = {"kind": MovementKind.RECEIVED, "on_hand_delta": amount}
        elif kind == "adjusted":
            deltas = {"kind": MovementKind.ADJUSTED, "on_hand_delta": amount}
        elif kind == "reserve":
            deltas = {"kind": MovementKind.ORDER_RESERVED, "reserved_delta": amount}
            batch.order_lines.append(
                OrderLineFact(site.id, skus[sku_code].id, at, amount, str(event_id))
            )
            pair = (site.code, sku_code)
            if pair not in reference.demand or reference.demand[pair] < at:
                reference.demand[pair] = at
        elif kind == "dispatch":
            deltas = {
                "kind": MovementKind.ORDER_DISPATCHED,
                "on_hand_delta": -amount,
                "reserved_delta": -amount,
            }
        elif kind == "returned":
            deltas = {"kind": MovementKind.ORDER_RETURNED, "on_hand_delta": amount}
        else:
            deltas = {"kind": MovementKind.COUNTED, "counted_qty": amount}
        batch.requests.append(MovementRequest(**request, **deltas))
        reference.move(
            site.code,
            sku_code,
            deltas["kind"],
            at,
            on_hand=deltas.get("on_hand_delta", 0),
            reserved=deltas.get("reserved_delta", 0),
            counted=deltas.get("counted_qty"),
        )
    batch.record()


def _reorder_point_set(site_code, sku_code, point, reference: Reference, sites, skus) -> None:
    """Change a reorder point as the admin would (saving models), and in the reference."""
    sku = skus[sku_code]
    if site_code is None:
        if point is not None and point < 0:
            point = None
        sku.reorder_point = point
        sku.save()
        reference.reorder_points[sku_code] = point
        return
    own = SiteReorderPoint.objects.filter(site=sites[site_code], sku=sku).first()
    if point is None or point < 0:
        if own is not None:
            own.delete()
        reference.site_reorder_points.pop((site_code, sku_code), None)
        return
    if own is None:
        SiteReorderPoint.objects.create(site=sites[site_code], sku=sku, reorder_point=point)
    else:
        own.reorder_point = point
        own.save()
    reference.site_reorder_points[(site_code, sku_code)] = point


def _assert_same(actual: dict, expected: dict, label: str) -> None:
    for key, value in expected.items():
        if isinstance(value, float):
            assert actual[key] == pytest.approx(value, rel=1e-9, abs=1e-9), (label, key)
        else:
            assert actual[key] == value, (label, key, actual[key], value)


@pytest.mark.slow
@pytest.mark.django_db
@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# Facts in the first seconds of the hour's first minute, before and after its start: taken out
# of that minute's bucket (the start in its first half), or added to the later buckets.
@example(
    stream=[
        ("received", "north", "A", 10, (-7200, 0)),
        ("cost", "A", Decimal("3.10")),
        ("dispatch", "north", "A", 2, (-3445, 0)),
        ("counted", "north", "A", 3, (-3440, 0)),
        ("received", "north", "A", 4, (-3420, 0)),
    ],
    duplicates=[],
    batch_ends=set(),
    now_offset_us=20_000_000,  # the hour starts 20 s into its first minute
).via("the start's minute read from its bucket")
@example(
    stream=[
        ("received", "north", "A", 10, (-7200, 0)),
        ("dispatch", "north", "A", 2, (-3415, 0)),
        ("counted", "north", "A", 3, (-3405, 0)),
    ],
    duplicates=[],
    batch_ends=set(),
    now_offset_us=40_000_000,  # 40 s in: the facts after the start are added
).via("the start's minute read from its facts")
@given(
    stream=st.lists(events, min_size=1, max_size=40),
    duplicates=st.lists(st.integers(min_value=0, max_value=39), max_size=5),
    batch_ends=st.sets(st.integers(min_value=1, max_value=44), max_size=6),
    # where `now` falls in its minute (so where every window starts): on the boundary, or anywhere
    now_offset_us=st.one_of(st.just(0), st.integers(min_value=0, max_value=59_999_999)),
)
def test_incremental_rebuilt_and_reference_kpis_agree(
    stream, duplicates, batch_ends, now_offset_us
):
    with transaction.atomic():
        base = now_mid_minute()
        sites = {code: site_make(code) for code in SITES}
        skus = {
            code: sku_make(code, unit_cost=cost, reorder_point=REORDER_POINTS[code])
            for code, cost in SKUS.items()
        }
        numbered = list(enumerate(stream))
        for index in duplicates:  # the same event sent again, later
            if index < len(numbered):
                numbered.append(numbered[index])
        reference = Reference()
        _apply(numbered, base, reference, sites, skus, batch_ends)
        now = (base + dt.timedelta(minutes=3)).replace(second=0, microsecond=0) + dt.timedelta(
            microseconds=now_offset_us
        )
        # every snapshot, not only each site's latest, was compared with the right stock
        site_codes = {site.id: code for code, site in sites.items()}
        sku_codes = {sku.id: code for code, sku in skus.items()}
        assert [
            (site_codes[site_id], [(sku_codes[sku], qty, held) for sku, qty, held in lines])
            for site_id, lines in SnapshotRecord.objects.order_by("id").values_list(
                "site_id", "lines"
            )
        ] == reference.snapshot_lines

        scopes = {None: set(SITES), **{code: {code} for code in SITES}}
        incremental = {}
        for scope, scope_sites in scopes.items():
            for window, window_s in WINDOWS.items():
                kpis = kpis_compute(site=scope, window=window, now=now)
                incremental[(scope, window)] = kpis
                _assert_same(kpis, reference.kpis(scope_sites, window_s, now), f"{scope} {window}")
        # The stockouts age with `now`: later reads cross the stockout buckets' edges.
        for later in (dt.timedelta(hours=1, minutes=7), dt.timedelta(days=2, hours=5)):
            for scope, scope_sites in scopes.items():
                kpis = kpis_compute(site=scope, window="1h", now=now + later)
                expected = reference.kpis(scope_sites, 3600, now + later)
                _assert_same(kpis, expected, f"{scope} 1h at now + {later}")
        counted = counters()
        assert counted == counted_from_status()

        call_command("rebuild_kpis", stdout=io.StringIO())
        for (scope, window), kpis in incremental.items():
            assert kpis_compute(site=scope, window=window, now=now) == kpis
        assert counters() == counted
        transaction.set_rollback(True)
