"""Random event streams give the same restocking answers three ways: the rows the writers keep
(moved along with time), those rows rebuilt from the ledger, and a plain reference computation
over the raw movements written here.

The stream mixes receipts, reservations, dispatches and returns dated over 33 days (some near
the 28-day window's start of the reads, some in the future of the first read), reorder point
changes and site lead time changes; it is read at several instants, in time order, with the
window moved (as a write's commit would) between some of them.
"""

import datetime as dt
import math
from fractions import Fraction

import pytest
from django.db import transaction
from django.test import override_settings
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kpis.models import RestockState, RestockWindow
from kpis.restock import fewest_days_of_cover, restock_lines, restock_page, running_out
from kpis.restock_state import restock_rebuild, restock_window_advance, step_floor, window_read
from ledger.models import MovementKind, SiteReorderPoint
from tests.builders import site_make, sku_make
from tests.dashboards.kpi_helpers import move, record

pytestmark = [pytest.mark.django_db, pytest.mark.slow]  # a minute or two

SITES = ("north", "south")
SKUS = {"A": 5, "B": None, "c": 2}  # reorder points; "c" sorts after the capitals
DAY_S = 86400
WINDOW_S = 28 * DAY_S
LEAD, TARGET = 3, 14

# Seconds from the first read; the reads come up to 2 days after it, on 2-hour steps. Many
# instants are drawn on or next to a read's window start (28 days before) or a read's instant,
# where the rows' demand is corrected (and the window moves in 5-minute steps).
STEP_S = 7200
READ_STEPS = 2 * DAY_S // STEP_S
on_a_step = st.integers(min_value=0, max_value=READ_STEPS).map(lambda step: step * STEP_S)
next_to = st.sampled_from([-1, 0, 0, 1, 299, 300])
near_the_start = st.tuples(on_a_step, next_to).map(lambda t: t[0] + t[1] - WINDOW_S)
near_a_read = st.tuples(on_a_step, next_to).map(lambda t: t[0] + t[1])
instants = st.one_of(
    st.integers(min_value=-33 * DAY_S, max_value=3 * DAY_S), near_the_start, near_a_read
)
site_names = st.sampled_from(SITES)
sku_names = st.sampled_from(sorted(SKUS))
quantities = st.integers(min_value=1, max_value=30)
events = st.one_of(
    st.tuples(st.just("received"), site_names, sku_names, quantities, instants),
    st.tuples(st.just("reserve"), site_names, sku_names, quantities, instants),
    st.tuples(st.just("dispatch"), site_names, sku_names, quantities, instants),
    st.tuples(st.just("returned"), site_names, sku_names, quantities, instants),
    st.tuples(
        st.just("reorder"),
        st.one_of(st.none(), site_names),
        sku_names,
        st.one_of(st.none(), st.integers(min_value=0, max_value=40)),
    ),
    st.tuples(st.just("lead"), site_names, st.one_of(st.none(), st.integers(1, 20))),
)
# Each read: seconds after the first read, whether the window is moved first, and a page.
reads = st.lists(
    st.tuples(
        on_a_step,
        st.booleans(),
        st.integers(min_value=0, max_value=4),
        st.integers(min_value=1, max_value=5),
    ),
    min_size=1,
    max_size=4,
)


class Reference:
    """Restocking computed straight from the movements, as docs/restocking.md words it."""

    def __init__(self):
        self.movements: list[tuple[str, str, str, int, int, dt.datetime]] = []
        self.points: dict[str, int | None] = dict(SKUS)
        self.site_points: dict[tuple[str, str], int] = {}
        self.leads: dict[str, int | None] = dict.fromkeys(SITES)

    def lines(self, now: dt.datetime, site: str | None = None) -> list[dict]:
        start = now - dt.timedelta(seconds=WINDOW_S)
        pairs = sorted({(m[0], m[1]) for m in self.movements if site in (None, m[0])})
        lines = []
        for pair in pairs:
            moves = [m for m in self.movements if (m[0], m[1]) == pair]
            available = sum(m[3] - m[4] for m in moves)
            demand = max(
                0,
                sum(
                    -m[3]
                    for m in moves
                    if m[2] in (MovementKind.ORDER_DISPATCHED, MovementKind.ORDER_RETURNED)
                    and start < m[5] <= now
                ),
            )
            point = self.site_points.get(pair, self.points[pair[1]])
            lead = self.leads[pair[0]] or LEAD
            daily = Fraction(demand, 28)
            cover = Fraction(available) / daily if demand else None
            needs = (point is not None and available < point) or (
                cover is not None and cover < lead
            )
            suggested = max(0, math.ceil(daily * TARGET) + (point or 0) - available)
            lines.append(
                {
                    "site": pair[0],
                    "sku": pair[1],
                    "available": available,
                    "reorder_point": point,
                    "demand_28d": demand,
                    "daily_demand": float(daily),
                    "days_of_cover": None if cover is None else float(cover),
                    "needs_restock": needs,
                    "suggested_qty": suggested if needs else 0,
                    "_cover": cover,
                }
            )
        return lines

    def restock(self, now, site=None) -> list[dict]:
        needing = [line for line in self.lines(now, site) if line["needs_restock"]]
        needing.sort(
            key=lambda line: (
                line["_cover"] is None,
                line["_cover"] or 0,
                line["site"],
                line["sku"],
            )
        )
        return [{k: v for k, v in line.items() if k != "_cover"} for line in needing]


def _apply(event, reference: Reference, sites: dict, skus: dict, first_read: dt.datetime):
    kind = event[0]
    if kind == "reorder":
        _, site, sku, point = event
        if site is None:
            skus[sku].reorder_point = point
            skus[sku].save()
            reference.points[sku] = point
        elif point is None:
            SiteReorderPoint.objects.filter(site=sites[site], sku=skus[sku]).delete()
            reference.site_points.pop((site, sku), None)
        else:
            SiteReorderPoint.objects.update_or_create(
                site=sites[site], sku=skus[sku], defaults={"reorder_point": point}
            )
            reference.site_points[(site, sku)] = point
        return
    if kind == "lead":
        _, site, lead = event
        sites[site].restock_lead_days = lead
        sites[site].save()
        reference.leads[site] = lead
        return
    _, site, sku, qty, offset = event
    at = first_read + dt.timedelta(seconds=offset)
    on_hand, reserved, movement_kind = {
        "received": (qty, 0, MovementKind.RECEIVED),
        "reserve": (0, qty, MovementKind.ORDER_RESERVED),
        "dispatch": (-qty, 0, MovementKind.ORDER_DISPATCHED),
        "returned": (qty, 0, MovementKind.ORDER_RETURNED),
    }[kind]
    record(move(sites[site], skus[sku], movement_kind, at, on_hand=on_hand, reserved=reserved))
    reference.movements.append((site, sku, movement_kind, on_hand, reserved, at))


STATE_FIELDS = (
    "site_id",
    "sku_id",
    "site_code",
    "sku_code",
    "available",
    "reorder_point",
    "lead_days",
    "demand",
    "cover",
    "below_point",
    "needs",
)


def _state_rows() -> list[tuple]:
    return list(RestockState.objects.order_by("site_id", "sku_id").values_list(*STATE_FIELDS))


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(stream=st.lists(events, max_size=40), reads=reads, gap_s=st.integers(0, 3 * 3600))
@override_settings(RESTOCK_LEAD_DAYS=LEAD, RESTOCK_TARGET_DAYS=TARGET)
def test_kept_rebuilt_and_reference_restocking_agree(stream, reads, gap_s):
    with transaction.atomic():
        sites = {code: site_make(code) for code in SITES}
        skus = {code: sku_make(code, reorder_point=point) for code, point in SKUS.items()}
        # The reads are in the past (moving the window never goes past the clock); the window
        # starts up to 3 hours before the first read's.
        first_read = timezone.now() - dt.timedelta(days=3)
        start = step_floor(first_read - dt.timedelta(seconds=WINDOW_S + gap_s))
        restock_rebuild(start=start)
        reference = Reference()
        for event in stream:
            _apply(event, reference, sites, skus, first_read)

        for offset_s, move_window, first, size in sorted(reads):
            now = first_read + dt.timedelta(seconds=offset_s)
            if move_window:
                restock_window_advance(now)
            expected = reference.restock(now)
            # answered from the rows: their window starts at or before this read's
            assert window_read()[0] <= now - dt.timedelta(seconds=WINDOW_S)
            assert [line.as_json() for line in restock_lines(now=now)] == expected
            assert restock_page(now=now, first=first, size=size) == (
                len(expected),
                restock_page(now=now)[1][first : first + size],
            )
            assert [
                line.as_json() for line in restock_page(now=now, first=first, size=size)[1]
            ] == (expected[first : first + size])
            north = [line.as_json() for line in restock_lines(site="north", now=now)]
            assert north == reference.restock(now, "north")
            every = reference.lines(now)
            assert fewest_days_of_cover(now=now) == min(
                (
                    Fraction(line["available"] * 28, line["demand_28d"])
                    for line in every
                    if line["demand_28d"]
                ),
                default=None,
            )
            days = Fraction(7, 2)
            assert {(line.site, line.sku) for line in running_out(days=days, now=now)} == {
                (line["site"], line["sku"])
                for line in every
                if line["demand_28d"]
                and Fraction(line["available"] * 28, line["demand_28d"]) < days
            }

        # The rows kept by the writers (and moved with time) are the rows rebuilt from the
        # ledger from the same window start.
        kept = _state_rows()
        window_start = window_read()[0]
        restock_rebuild(start=window_start)
        assert _state_rows() == kept
        assert RestockWindow.objects.get().start == window_start
        transaction.set_rollback(True)
