"""Five weeks of backdated demo history: opening stock, sales, replenishment and cycle counts per
stock level.

Sized on the live traffic (`ingest.simulation.units_shipped_per_day` at the simulator's default
rate): the history and the simulator are one business, so every KPI window, the 30 days
included, shows a plausible turnover from the first minute of `make run` (docs/dashboard.md,
"Demo data"). Sales are daily lumps more than a week back, hourly within the week and by the
minute in the last hour, so that each window's trend chart has points at its own resolution.

Stock is sized to demand: a level is topped up to 12-30 days of sales and reordered when 3-6
days' worth is left, so it always holds 3-30 days of cover; a few levels (RUNNING_LOW) missed
their last delivery and are under their reorder point (REORDER_POINT_DAYS of sales) when the
demo starts. Each level is counted about every COUNT_EVERY (in the LIVE_COUNTS before the
start, as often as the simulator counts), and a count rarely finds a
difference (COUNT_MISMATCH_SHARE), as in a well-run warehouse: the mismatch rate of the demo's
first day is that of a business, not of its first few counts.
"""

import random
from collections.abc import Iterator
from datetime import datetime, timedelta

from ledger.models import MovementCause, MovementKind
from ledger.services import MovementRequest

HISTORY_DAYS = 35  # more than the longest window: its start already holds stock
COVER_DAYS = (12, 30)  # stock right after a receipt, in days of sales
REORDER_DAYS = (3, 6)  # a level is replenished once this many days of sales are left
REORDER_POINT_DAYS = 3  # the demo's reorder points: three days of sales
RUNNING_LOW = 8  # levels whose last delivery has not come: under their reorder point
LOW_DAYS = (1, 2.5)  # what those hold, in days of sales
LOW_TARGET_DAYS = (7, 9.5)  # their stock after a receipt: a week's sales leaves under 3 days
COUNT_EVERY = timedelta(hours=8)
# The last hours are counted as the simulator counts (~10 a level and hour): at 8 h the 1 h
# Counts tile read 20 before the start and ~2,000 after it (delta "+1,800", a cliff in its
# sparkline).
LIVE_COUNTS = timedelta(hours=2)
COUNT_MISMATCH_SHARE = 0.01
OPENING_REF = "demo:opening-stock"
SALES_REF = "demo:history-sales"
RECEIPT_REF = "demo:history-receipt"
COUNT_REF = "demo:history-count"

MINUTE, HOUR, DAY = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)


def _periods(now: datetime) -> Iterator[tuple[datetime, timedelta]]:
    """(start, length) of the sales periods from HISTORY_DAYS ago to `now`, oldest first."""
    start = now - HISTORY_DAYS * DAY
    while start < now:
        age = now - start
        length = DAY if age > 7 * DAY else HOUR if age > HOUR else MINUTE
        yield start, length
        start += length


def _movement(pair: tuple[str, str], kind: str, delta: int, at: datetime, ref: str):
    site, sku = pair
    return MovementRequest(
        site=site,
        sku=sku,
        kind=kind,
        on_hand_delta=delta,
        occurred_at=at,
        cause=MovementCause.FEED_EVENT,
        cause_ref=ref,
    )


def _count(pair: tuple[str, str], counted: int, at: datetime) -> MovementRequest:
    site, sku = pair
    return MovementRequest(
        site=site,
        sku=sku,
        kind=MovementKind.COUNTED,
        counted_qty=counted,
        occurred_at=at,
        cause=MovementCause.FEED_EVENT,
        cause_ref=COUNT_REF,
    )


def reorder_point(daily_units: float) -> int:
    """The demo's reorder point of every level: REORDER_POINT_DAYS of its sales."""
    return round(daily_units * REORDER_POINT_DAYS)


def demo_history(
    *,
    pairs: list[tuple[str, str]],
    daily_units: float,
    now: datetime,
    counts_per_hour: float = 0,
    seed: int = 7,
) -> list[MovementRequest]:
    """The movements of each (site code, SKU code) pair, oldest first, ending at `now`;
    `counts_per_hour`: the simulator's counts of a level an hour (`counts_per_level_hour`)."""
    rng = random.Random(seed)
    running_low = set(rng.sample(pairs, k=min(RUNNING_LOW, len(pairs))))
    requests = []
    for pair in pairs:
        # a level running low is a small one: a week without its delivery takes it under
        cover_days = LOW_TARGET_DAYS if pair in running_low else COVER_DAYS
        target = round(daily_units * rng.uniform(*cover_days))
        reorder_at = round(daily_units * rng.uniform(*REORDER_DAYS))
        low_at = round(daily_units * rng.uniform(*LOW_DAYS)) if pair in running_low else None
        on_hand = target
        opened_at = now - HISTORY_DAYS * DAY
        requests.append(_movement(pair, MovementKind.RECEIVED, target, opened_at, OPENING_REF))
        last_delivery_sized = False
        for start, length in _periods(now):
            last_week = now - start <= 7 * DAY
            if low_at is not None and last_week:
                if not last_delivery_sized:
                    # its last delivery a week ago was short: a week of sales above its low mark
                    refill = low_at + round(daily_units * 7) - on_hand
                    if refill > 0:
                        requests.append(
                            _movement(pair, MovementKind.RECEIVED, refill, start, RECEIPT_REF)
                        )
                        on_hand += refill
                    last_delivery_sized = True
            elif on_hand <= reorder_at:
                # the truck arrives at the start of the period
                refill = target - on_hand
                requests.append(_movement(pair, MovementKind.RECEIVED, refill, start, RECEIPT_REF))
                on_hand = target
            expected = daily_units * (length / DAY)
            sold = min(on_hand, round(expected * rng.uniform(0.5, 1.5)))
            if low_at is not None and last_week:
                sold = min(sold, max(0, on_hand - low_at))  # sells down to its low mark only
            if sold > 0:
                at = start + length / 2
                requests.append(
                    _movement(pair, MovementKind.ORDER_DISPATCHED, -sold, at, SALES_REF)
                )
                on_hand -= sold
            for at in _count_times(rng, start, length, now, counts_per_hour):
                difference = 0
                if rng.random() < COUNT_MISMATCH_SHARE:
                    difference = max(-on_hand, rng.choice((-2, -1, -1, 1)))
                on_hand += difference
                requests.append(_count(pair, on_hand, at))
    return requests


def _count_times(
    rng: random.Random, start: datetime, length: timedelta, now: datetime, per_hour: float
) -> list[datetime]:
    """When a level is counted in a period, after its sale: about every COUNT_EVERY, but at the
    simulator's cadence (`per_hour`) in the LIVE_COUNTS before `now`, so that the counts of the
    1 h window and of the hour before it read as the live traffic's."""
    if now - start <= LIVE_COUNTS:
        expected = length / HOUR * per_hour
    else:
        expected = min(1.0, length / COUNT_EVERY)  # a day more than a week back: one count
    times = int(expected) + (rng.random() < expected % 1)
    return sorted(start + length * rng.uniform(0.6, 0.95) for _ in range(times))


# The demo business's service levels before `load_demo`, per minute, at the simulator's traffic:
# without them the first snapshot line off by one would be the whole correctness SLI of the
# last 6 hours, a burn rate of 6x that pages within seconds of `make run`.
SLO_HISTORY = timedelta(hours=7)  # more than the slow burn's 6 hours
SLO_PER_MINUTE = {  # (events a minute, one bad in so many)
    "ingest_availability": (180, 0),  # ingest answers: none refused
    "freshness": (300, 0),  # events applied: all within a minute
    "correctness": (60, 300),  # snapshot lines: about 0.3 % differ from on hand
}


def slo_history(*, now: datetime) -> dict[tuple[str, int], list[int]]:
    """{(slo, minute start in epoch seconds): [good, total]} for the SLO_HISTORY before `now`."""
    counts = {}
    first = int((now - SLO_HISTORY).timestamp()) // 60 * 60
    last = int(now.timestamp()) // 60 * 60
    for slo, (total, one_bad_in) in SLO_PER_MINUTE.items():
        for number, minute in enumerate(range(first, last, 60)):
            bad = 1 if one_bad_in and (number * total) % one_bad_in < total else 0
            counts[(slo, minute)] = [total - bad, total]
    return counts
