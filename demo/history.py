"""Five weeks of backdated demo history: opening stock, sales and replenishment per stock level.

Sized on the live traffic (`ingest.simulation.units_shipped_per_day` at the simulator's default
rate): the history and the simulator are one business, so every KPI window, the 30 days
included, shows a plausible turnover from the first minute of `make run` (docs/dashboard.md,
"Demo data"). Sales are daily lumps more than a week back, hourly within the week and by the
minute in the last hour, so that each window's trend chart has points at its own resolution.
"""

import random
from collections.abc import Iterator
from datetime import datetime, timedelta

from ledger.models import MovementCause, MovementKind
from ledger.services import MovementRequest

HISTORY_DAYS = 35  # more than the longest window: its start already holds stock
COVER_DAYS = (20, 36)  # stock right after a receipt, in days of sales (turnover ~10-18/year)
REORDER_DAYS = (5, 9)  # a level is replenished once this many days of sales are missing
OPENING_REF = "demo:opening-stock"
SALES_REF = "demo:history-sales"
RECEIPT_REF = "demo:history-receipt"

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


def demo_history(
    *, pairs: list[tuple[str, str]], daily_units: float, now: datetime, seed: int = 7
) -> list[MovementRequest]:
    """The movements of each (site code, SKU code) pair, oldest first, ending at `now`."""
    rng = random.Random(seed)
    requests = []
    for pair in pairs:
        target = round(daily_units * rng.uniform(*COVER_DAYS))
        reorder_at = target - round(daily_units * rng.uniform(*REORDER_DAYS))
        on_hand = target
        opened_at = now - HISTORY_DAYS * DAY
        requests.append(_movement(pair, MovementKind.RECEIVED, target, opened_at, OPENING_REF))
        for start, length in _periods(now):
            if on_hand <= reorder_at:
                # the truck arrives at the start of the period
                refill = target - on_hand
                requests.append(_movement(pair, MovementKind.RECEIVED, refill, start, RECEIPT_REF))
                on_hand = target
            expected = daily_units * (length / DAY)
            sold = min(on_hand, round(expected * rng.uniform(0.5, 1.5)))
            if sold > 0:
                at = start + length / 2
                requests.append(
                    _movement(pair, MovementKind.ORDER_DISPATCHED, -sold, at, SALES_REF)
                )
                on_hand -= sold
    return requests
