"""Realistic feed traffic, generated without I/O: used by `simulate_feeds` and the benchmarks.

Three producers, as in a real deployment: a web shop (orders created and cancelled across
channels), a courier app (dispatch, delivery with shipping costs and a few inaccurate ones,
returns) and a warehouse system (receipts that keep stock from running dry, transfers, cycle
counts with occasional mismatches, snapshots). A small share of events is malformed and a small
share is re-sent (both on top of the good traffic), so duplicates and dead letters show up in
the demo.
"""

import heapq
import itertools
import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

SHOP, COURIER, WAREHOUSE = "shop", "courier", "warehouse"
ROLES = (SHOP, COURIER, WAREHOUSE)
CHANNELS = ("web", "web", "web", "marketplace", "marketplace", "store", "app")


@dataclass
class SimulationMix:
    """Shares of the traffic; delays are in simulated seconds."""

    malformed: float = 0.01
    resend: float = 0.01
    cancel: float = 0.03
    inaccurate: float = 0.04
    returned: float = 0.02
    count_mismatch: float = 0.1
    courier_reorders: float = 0.02  # a delivery reported before its dispatch
    dispatch_delay: tuple[float, float] = (5, 60)
    delivery_delay: tuple[float, float] = (20, 240)
    # Of the events that are not order follow-ups, the share of new orders.
    new_order_share: float = 0.55


@dataclass(order=True)
class _Due:
    at: datetime
    seq: int
    role: str = field(compare=False)
    event: dict = field(compare=False)


class FeedSimulator:
    """Generate events tick by tick; `tick(now, count)` returns {role: [event, ...]}."""

    def __init__(
        self,
        *,
        sites: list[str],
        skus: list[str],
        stock: dict[tuple[str, str], int] | None = None,
        seed: int | None = None,
        mix: SimulationMix | None = None,
        run_id: str | None = None,
    ):
        if not sites or not skus:
            raise ValueError("the simulator needs at least one site and one SKU")
        self.sites, self.skus = list(sites), list(skus)
        self.random = random.Random(seed)
        self.mix = mix or SimulationMix()
        self.run_id = run_id or f"{self.random.getrandbits(32):08x}"
        self.believed = defaultdict(int, stock or {})
        self.sequence = itertools.count(1)
        self.due: list[_Due] = []
        self.sent: dict[str, list[dict]] = {role: [] for role in ROLES}

    # --- one tick ------------------------------------------------------------------------

    def tick(self, *, now: datetime, count: int) -> dict[str, list[dict]]:
        out: dict[str, list[dict]] = {role: [] for role in ROLES}
        produced = 0
        while self.due and self.due[0].at <= now and produced < count:
            due = heapq.heappop(self.due)
            out[due.role].append(due.event)
            produced += 1
        while produced < count:
            role, event = self._fresh_event(now)
            out[role].append(event)
            produced += 1
        for role, events in out.items():
            extras = []
            for event in events:
                roll = self.random.random()
                if roll < self.mix.malformed:
                    extras.append(self._malformed(event))
                elif roll < self.mix.malformed + self.mix.resend and self.sent[role]:
                    extras.append(self.random.choice(self.sent[role]))
            self.sent[role] = (self.sent[role] + events)[-500:]
            events.extend(extras)
        return out

    def _fresh_event(self, now: datetime) -> tuple[str, dict]:
        if self.random.random() < self.mix.new_order_share:
            return SHOP, self._order(now)
        return WAREHOUSE, self._stock_event(now)

    # --- orders --------------------------------------------------------------------------

    def _base(self, type_: str, occurred_at: datetime, site: str) -> dict:
        return {
            "event_id": f"sim-{self.run_id}-{next(self.sequence)}",
            "type": type_,
            "occurred_at": occurred_at.astimezone(UTC).isoformat(),
            "site": site,
        }

    def _later(self, role: str, at: datetime, event: dict) -> None:
        heapq.heappush(self.due, _Due(at, next(self.sequence), role, event))

    def _order(self, now: datetime) -> dict:
        site = self.random.choice(self.sites)
        order_id = f"ord-{self.run_id}-{next(self.sequence)}"
        lines = {}
        for sku in self.random.sample(self.skus, k=min(len(self.skus), self.random.randint(1, 5))):
            lines[sku] = self.random.choice((1, 1, 1, 2, 2, 3, 4))
        for sku, qty in lines.items():
            self.believed[(site, sku)] -= qty
        created = self._base("order.created", now, site) | {
            "order_id": order_id,
            "channel": self.random.choice(CHANNELS),
            "lines": [{"sku": sku, "qty": qty} for sku, qty in lines.items()],
        }
        if self.random.random() < self.mix.cancel:
            cancel_at = now + timedelta(seconds=self.random.uniform(*self.mix.dispatch_delay))
            self._later(
                SHOP,
                cancel_at,
                self._base("order.cancelled", cancel_at, site) | {"order_id": order_id},
            )
            for sku, qty in lines.items():
                self.believed[(site, sku)] += qty
            return created
        courier = f"courier-{self.random.randint(1, 40)}"
        dispatch_at = now + timedelta(seconds=self.random.uniform(*self.mix.dispatch_delay))
        deliver_at = dispatch_at + timedelta(seconds=self.random.uniform(*self.mix.delivery_delay))
        accurate = self.random.random() >= self.mix.inaccurate
        dispatched = self._base("order.dispatched", dispatch_at, site) | {
            "order_id": order_id,
            "courier_id": courier,
        }
        delivered = self._base("order.delivered", deliver_at, site) | {
            "order_id": order_id,
            "courier_id": courier,
            "shipping_cost": f"{self.random.uniform(2.5, 14):.2f}",
            "currency": "USD",
            "accurate": accurate,
            "issues": [] if accurate else [self.random.choice(("wrong item", "missing item"))],
        }
        if self.random.random() < self.mix.courier_reorders:
            # the courier app's delivery report overtakes its dispatch report
            self._later(COURIER, dispatch_at, delivered)
            self._later(COURIER, deliver_at, dispatched)
        else:
            self._later(COURIER, dispatch_at, dispatched)
            self._later(COURIER, deliver_at, delivered)
        if self.random.random() < self.mix.returned:
            return_at = deliver_at + timedelta(seconds=self.random.uniform(60, 600))
            sku, qty = next(iter(lines.items()))
            self._later(
                COURIER,
                return_at,
                self._base("order.returned", return_at, site)
                | {"order_id": order_id, "lines": [{"sku": sku, "qty": qty}]},
            )
        return created

    # --- warehouse -----------------------------------------------------------------------

    def _stock_event(self, now: datetime) -> dict:
        site = self.random.choice(self.sites)
        low = [sku for sku in self.skus if self.believed[(site, sku)] < 20]
        roll = self.random.random()
        if low and roll < 0.6:
            sku = self.random.choice(low)
            qty = self.random.randint(40, 120)
            self.believed[(site, sku)] += qty
            return self._base("stock.received", now, site) | {
                "sku": sku,
                "qty": qty,
                "reference": f"PO-{self.random.randint(10000, 99999)}",
            }
        sku = self.random.choice(self.skus)
        if roll < 0.3:
            qty = self.random.randint(30, 80)
            self.believed[(site, sku)] += qty
            return self._base("stock.received", now, site) | {"sku": sku, "qty": qty}
        if roll < 0.5 and len(self.sites) > 1 and self.believed[(site, sku)] > 10:
            to_site = self.random.choice([other for other in self.sites if other != site])
            qty = self.random.randint(1, 5)
            self.believed[(site, sku)] -= qty
            self.believed[(to_site, sku)] += qty
            return self._base("stock.transferred", now, site) | {
                "sku": sku,
                "qty": qty,
                "to_site": to_site,
            }
        if roll < 0.85:
            counted = max(0, self.believed[(site, sku)])
            if self.random.random() < self.mix.count_mismatch:
                counted = max(0, counted + self.random.choice((-2, -1, 1)))
            self.believed[(site, sku)] = counted
            return self._base("stock.counted", now, site) | {"sku": sku, "counted_qty": counted}
        if roll < 0.95:
            delta = self.random.choice((-2, -1, -1, 1))
            self.believed[(site, sku)] += delta
            return self._base("stock.adjusted", now, site) | {
                "sku": sku,
                "qty_delta": delta,
                "reason": "damaged" if delta < 0 else "found",
            }
        skus = self.random.sample(self.skus, k=min(len(self.skus), 8))
        return self._base("stock.snapshot", now, site) | {
            "lines": [{"sku": sku, "qty": max(0, self.believed[(site, sku)])} for sku in skus]
        }

    def _malformed(self, event: dict) -> dict:
        broken = dict(event, event_id=f"sim-{self.run_id}-{next(self.sequence)}")
        choice = self.random.randrange(4)
        if choice == 0:
            broken.pop("site")
        elif choice == 1:
            broken["occurred_at"] = "yesterday"
        elif choice == 2:
            broken["site"] = "no-such-site"
        else:
            broken["type"] = "stock.teleported"
        return broken
