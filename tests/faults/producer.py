"""A feed producer for the real stack: sends batches of receipts and whole orders through the
HTTP API, resends a batch until it is answered 202 (same event ids, as a producer should), and
keeps the ledger the stock must then equal."""

import itertools
import random
import threading
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

from tests.faults.stack import SITES, SKUS, Stack

EVENTS_PER_BATCH = 40


class Producer:
    """Sends batches until paused; keeps the ledger the stock must equal."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.random = random.Random(12)  # a reproducible feed
        self.sequence = itertools.count(1)
        self.expected: dict[tuple[str, str], int] = defaultdict(int)  # on hand per site, SKU
        self.moving_events: set[str] = set()  # event ids that move stock
        self.events_accepted = 0
        self.batches: list[str] = []
        self.accepted_at: list[float] = []  # monotonic time each batch was answered 202
        self.statuses: Counter = Counter()
        self.flowing = threading.Event()
        self._idle = threading.Event()  # set while paused, between two batches
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="producer", daemon=True)

    def start(self) -> None:
        self.flowing.set()
        self._thread.start()

    def pause(self) -> None:
        """Stop sending after the batch under way has been answered 202."""
        self.flowing.clear()
        assert self._idle.wait(timeout=120), "the producer never finished its batch under way"

    def resume(self) -> None:
        self._idle.clear()
        self.flowing.set()

    def stop(self) -> None:
        self._stop.set()
        self.flowing.set()
        self._thread.join(timeout=120)
        assert not self._thread.is_alive(), "the producer is stuck"

    def site_on_hand(self) -> dict[str, int]:
        """On hand per site (what the dashboard's site table shows) by this producer's ledger."""
        totals = dict.fromkeys(SITES, 0)
        for (site, _), value in self.expected.items():
            totals[site] += value
        return totals

    def _batch(self) -> tuple[list[dict], dict, set[str]]:
        """Events of one batch, their effect on stock, and the ids of those that move stock."""
        events, effect, moving = [], defaultdict(int), set()
        occurred = datetime.now(UTC) - timedelta(minutes=20)
        while len(events) < EVENTS_PER_BATCH:
            n = next(self.sequence)
            site = self.random.choice(SITES)
            at = (occurred + timedelta(seconds=n % 600)).isoformat()
            if n % 3:
                sku, qty = self.random.choice(SKUS), self.random.randint(1, 5)
                events.append(_event(f"r{n}", "stock.received", at, site, sku=sku, qty=qty))
                effect[(site, sku)] += qty
                moving.add(f"r{n}")
                continue
            lines = {sku: self.random.randint(1, 3) for sku in self.random.sample(SKUS, 2)}
            order = {"order_id": f"o{n}"}
            events.append(
                _event(
                    f"c{n}",
                    "order.created",
                    at,
                    site,
                    **order,
                    lines=[{"sku": sku, "qty": qty} for sku, qty in lines.items()],
                    channel="web",
                )
            )
            events.append(_event(f"d{n}", "order.dispatched", at, site, **order, courier_id="k1"))
            events.append(
                _event(
                    f"v{n}",
                    "order.delivered",
                    at,
                    site,
                    **order,
                    courier_id="k1",
                    shipping_cost="4.50",
                    accurate=bool(n % 7),
                )
            )
            for sku, qty in lines.items():
                effect[(site, sku)] -= qty
            moving.update({f"c{n}", f"d{n}"})
        return events, effect, moving

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.flowing.is_set():
                self._idle.set()
                self.flowing.wait()
                continue
            events, effect, moving = self._batch()
            while True:  # a producer resends until the batch is accepted
                answer = self.stack.post_events(events, timeout=30)
                self.statuses[answer.status] += 1
                if answer.status == 202:
                    break
                time.sleep(0.5)
            self.batches.append(answer.json()["batch_id"])
            self.accepted_at.append(time.monotonic())
            self.events_accepted += len(events)
            for key, delta in effect.items():
                self.expected[key] += delta
            self.moving_events |= moving
            time.sleep(0.1)


def _event(event_id: str, type_: str, occurred_at: str, site: str, **fields) -> dict:
    return {"event_id": event_id, "type": type_, "occurred_at": occurred_at, "site": site, **fields}


def batches_left(stack: Stack, batch_ids: list[str]) -> int | None:
    """Batches among these not done yet; None while the database cannot say."""
    try:
        ((left,),) = stack.sql(
            "SELECT count(*) FROM ingest_ingestbatch WHERE id = ANY(%s::uuid[]) "
            "AND status <> 'done'",
            batch_ids,
        )
    except Exception:  # PostgreSQL still starting up
        return None
    return left
