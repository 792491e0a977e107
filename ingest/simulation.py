"""Realistic feed traffic, generated without I/O: used by `simulate_feeds` and the benchmarks.

Three producers, as in a real deployment: a web shop (orders created and cancelled across
channels), a courier app (dispatch, delivery with shipping costs and a few inaccurate ones,
returns) and a warehouse system (receipts that replenish what was shipped, transfers, cycle
counts with occasional mismatches, snapshots). A small share of events is malformed and a small
share is re-sent (both on top of the good traffic), so duplicates and dead letters show up in
the demo.
"""

import functools
import heapq
import itertools
import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

SHOP, COURIER, WAREHOUSE = "shop", "courier", "warehouse"
ROLES = (SHOP, COURIER, WAREHOUSE)
CHANNELS = ("web", "web", "web", "marketplace", "marketplace", "store", "app")
# Events per second of `simulate_feeds` (and so of the demo): ~1.3 orders/s, enough to see
# every tile move within a minute; `load_demo` sizes the demo's stock on this traffic.
DEFAULT_RATE = 5.0
# Replenishment: a (site, SKU) is topped up to its target (the on-hand it started with, at
# least MIN_TARGET) once it is short of it by a lot (1/1000 of the target, at least MIN_LOT), so
# receipts balance what is shipped: stock neither runs dry nor grows without end.
MIN_TARGET = 100
MIN_LOT = 40


@dataclass
class SimulationMix:
    """Shares of the traffic; delays are in simulated seconds."""

    # One event in a thousand: each is a dead letter, open until someone replays or discards it,
    # and at 1 % (~3 a minute) the default "More than 100 dead letters" rule fired in a quiet
    # demo after 30 minutes (measured on make run, SQLite). Now ~20 an hour: about five hours.
    malformed: float = 0.001
    resend: float = 0.01
    cancel: float = 0.03
    # One delivery in a hundred wrong or short: at 4 % the demo's accuracy tile sat at its
    # built-in watch (below 98 %) and a site's 1 h window dipped under bad (95 %) on the TV.
    inaccurate: float = 0.01
    returned: float = 0.02
    # A well-run warehouse: about one count in a hundred finds a difference. At 3 % of counts
    # the demo's 24 h mismatch rate sat near the default rule's 5 % and opened its alert within
    # minutes of `make run`, its first few counts deciding; 2 % of snapshot lines was the whole
    # budget of the correctness SLO.
    count_mismatch: float = 0.01  # share of cycle counts off by a unit or two
    snapshot_mismatch: float = 0.005  # share of snapshot lines off by a unit or two
    courier_reorders: float = 0.02  # a delivery reported before its dispatch
    # A courier's times: picked and handed over within 30 s to 5 min, delivered 5 to 45 min
    # later (created to delivered ~6-50 min, where it was 25 s to 5 min).
    dispatch_delay: tuple[float, float] = (30, 300)
    delivery_delay: tuple[float, float] = (300, 2700)
    # Of the events that are not order follow-ups, the share of new orders.
    new_order_share: float = 0.55


@dataclass(order=True)
class _Due:
    at: datetime
    seq: int
    role: str = field(compare=False)
    event: dict = field(compare=False)
    # on-hand changes the event makes once sent: ((site, sku), delta), ...
    on_hand: tuple = field(compare=False, default=())
    # reservations the event settles (dispatch, cancellation): ((site, sku), qty), ...
    settles: tuple = field(compare=False, default=())


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
        # The simulator's view of on-hand: moved as its events are sent, and re-read from the
        # real ledger through `stock_observe`, so that counts and snapshots start from it.
        self.believed = defaultdict(int, stock or {})
        self.promised = defaultdict(int)  # ordered, not dispatched yet: what receipts top up
        self.targets = {key: max(MIN_TARGET, qty) for key, qty in (stock or {}).items()}
        self.sequence = itertools.count(1)
        self.due: list[_Due] = []
        self.fresh_owed = 0.0  # fresh events owed, in fractions of one (`tick`)
        self.sent: dict[str, list[dict]] = {role: [] for role in ROLES}

    # --- one tick ------------------------------------------------------------------------

    def tick(self, *, now: datetime, count: int) -> dict[str, list[dict]]:
        out: dict[str, list[dict]] = {role: [] for role in ROLES}
        # Fresh events (new orders, the warehouse's) take the steady traffic's share of `count`
        # whatever follow-ups are due: at a start, with few follow-ups due yet (no delivery for
        # the first minutes), their share went to new orders, and the demo's orders per minute
        # read ~125 for its first five minutes against ~79 after.
        self.fresh_owed += count * fresh_share(self.mix)
        fresh = min(count, int(self.fresh_owed))
        self.fresh_owed -= fresh
        sent_due = 0
        # Follow-ups as they come due, up to `count` a tick: a backlog drains, never piles up.
        while self.due and self.due[0].at <= now and sent_due < count:
            due = heapq.heappop(self.due)
            out[due.role].append(due.event)
            for key, delta in due.on_hand:
                self.believed[key] += delta
            for key, qty in due.settles:
                self.promised[key] -= qty
            sent_due += 1
        for _ in range(fresh):
            role, event = self._fresh_event(now)
            out[role].append(event)
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

    def warm_start(self, *, now: datetime, since: datetime, rate: float) -> list[dict]:
        """Orders already under way at `now`, as if the traffic had been running: the orders
        of the last dispatch delay whose dispatch comes after `since` (the ledger's newest sale:
        those before it are in the history already). Returns their `order.created` events, to
        send first (late: they happened before `now`); their follow-ups are scheduled.

        Without it the demo's first minutes had orders but no dispatches (each waits its
        dispatch delay): a dip of turnover to near 0 on the 1 h chart at `make run`'s start.
        """
        orders_per_second = order_rate(rate, self.mix)
        # From a dispatch delay before `since` when the history ends just before `now` (the
        # demo: the orders created then and dispatched after it are in neither), else before
        # `now` (a restart long after the last dispatch).
        newest = since if now - since < timedelta(seconds=self.mix.dispatch_delay[1]) else now
        first = newest - timedelta(seconds=self.mix.dispatch_delay[1])
        created = []
        owed = 0.0
        for second in range(int((now - first).total_seconds())):
            owed += orders_per_second
            while owed >= 1:
                owed -= 1
                created.append(self._order(first + timedelta(seconds=second)))
        # Drop the orders dispatched (or cancelled) by `since`, with their follow-ups and
        # reservations: the history holds their sales.
        dropped = set()
        for due in self.due:
            if due.settles and due.at <= since:
                dropped.add(due.event["order_id"])
                for key, qty in due.settles:
                    self.promised[key] -= qty
        self.due = [due for due in self.due if due.event.get("order_id") not in dropped]
        heapq.heapify(self.due)
        return [event for event in created if event["order_id"] not in dropped]

    def stock_observe(self, on_hand: dict[tuple[str, str], int]) -> None:
        """Take the ledger's on-hand ((site, sku) -> qty) as the truth, e.g. read from
        `GET /api/stock` once every event sent so far has been applied."""
        self.believed.update(on_hand)

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

    def _later(self, role: str, at: datetime, event: dict, on_hand=(), settles=()) -> None:
        """Send `event` once the simulated clock reaches `at` (never before it happened); its
        `on_hand` changes and `settles` count from then."""
        due = _Due(at, next(self.sequence), role, event, tuple(on_hand), tuple(settles))
        heapq.heappush(self.due, due)

    def _on_hand_add(self, key: tuple[str, str], delta: int) -> None:
        self.believed[key] += delta

    def _available(self, site: str, sku: str) -> int:
        return self.believed[(site, sku)] - self.promised[(site, sku)]

    def _shortfall(self, site: str, sku: str) -> int:
        """What a receipt brings; 0 until the pair is short of its target by a lot."""
        target = self.targets.get((site, sku), MIN_TARGET)
        missing = target - self._available(site, sku)
        return missing if missing >= max(MIN_LOT, target // 1000) else 0

    def _order(self, now: datetime) -> dict:
        site = self.random.choice(self.sites)
        order_id = f"ord-{self.run_id}-{next(self.sequence)}"
        lines = {}
        for sku in self.random.sample(self.skus, k=min(len(self.skus), self.random.randint(1, 5))):
            lines[sku] = self.random.choice((1, 1, 1, 2, 2, 3, 4))
        reserved = [((site, sku), qty) for sku, qty in lines.items()]
        for key, qty in reserved:
            self.promised[key] += qty
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
                settles=reserved,
            )
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
        # creating an order only reserves: on-hand moves when the dispatch is sent
        shipped = [((site, sku), -qty) for sku, qty in lines.items()]
        if self.random.random() < self.mix.courier_reorders:
            # the courier app's dispatch report is held up and arrives after its delivery
            # report (an event is never sent before it happened)
            late_by = timedelta(seconds=self.random.uniform(1, 30))
            self._later(COURIER, deliver_at, delivered)
            self._later(COURIER, deliver_at + late_by, dispatched, shipped, reserved)
        else:
            self._later(COURIER, dispatch_at, dispatched, shipped, reserved)
            self._later(COURIER, deliver_at, delivered)
        if self.random.random() < self.mix.returned:
            return_at = deliver_at + timedelta(seconds=self.random.uniform(60, 600))
            sku, qty = next(iter(lines.items()))
            self._later(
                COURIER,
                return_at,
                self._base("order.returned", return_at, site)
                | {"order_id": order_id, "lines": [{"sku": sku, "qty": qty}]},
                [((site, sku), qty)],
            )
        return created

    # --- warehouse -----------------------------------------------------------------------

    def _stock_event(self, now: datetime) -> dict:
        site = self.random.choice(self.sites)
        roll = self.random.random()
        if roll < 0.3:
            short = [sku for sku in self.skus if self._shortfall(site, sku)]
            if short:
                sku = self.random.choice(short)
                qty = self._shortfall(site, sku)
                self._on_hand_add((site, sku), qty)
                return self._base("stock.received", now, site) | {
                    "sku": sku,
                    "qty": qty,
                    "reference": f"PO-{self.random.randint(10000, 99999)}",
                }
            roll = self.random.uniform(0.3, 1.0)  # nothing to replenish: one of the others
        sku = self.random.choice(self.skus)
        if roll < 0.5 and len(self.sites) > 1 and self._available(site, sku) > 10:
            to_site = self.random.choice([other for other in self.sites if other != site])
            qty = self.random.randint(1, 5)
            self._on_hand_add((site, sku), -qty)
            self._on_hand_add((to_site, sku), qty)
            return self._base("stock.transferred", now, site) | {
                "sku": sku,
                "qty": qty,
                "to_site": to_site,
            }
        if roll < 0.85:
            counted = max(0, self.believed[(site, sku)])
            if self.random.random() < self.mix.count_mismatch:
                counted = max(0, counted + self._small_difference())
            self._on_hand_add((site, sku), counted - self.believed[(site, sku)])
            return self._base("stock.counted", now, site) | {"sku": sku, "counted_qty": counted}
        if roll < 0.95:
            delta = self.random.choice((-2, -1, -1, 1))
            self._on_hand_add((site, sku), delta)
            return self._base("stock.adjusted", now, site) | {
                "sku": sku,
                "qty_delta": delta,
                "reason": "damaged" if delta < 0 else "found",
            }
        skus = self.random.sample(self.skus, k=min(len(self.skus), 8))
        lines = []
        for sku in skus:
            # the stock at the snapshot's place among the events sent: the ledger compares it
            # with on_hand after the events applied before it (docs/ingest.md)
            qty = max(0, self.believed[(site, sku)])
            if self.random.random() < self.mix.snapshot_mismatch:
                qty = max(0, qty + self._small_difference())
            lines.append({"sku": sku, "qty": qty})
        return self._base("stock.snapshot", now, site) | {"lines": lines}

    def _small_difference(self) -> int:
        return self.random.choice((-2, -1, -1, 1))

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


def fresh_share(mix: SimulationMix) -> float:
    """The share of fresh events (new orders and the warehouse's) in the steady traffic: each
    new order brings two follow-ups, its dispatch and its delivery."""
    return 1 / (1 + 2 * mix.new_order_share)


def order_rate(rate: float, mix: SimulationMix) -> float:
    """Orders a second in the steady traffic of `rate` events a second."""
    return rate * fresh_share(mix) * mix.new_order_share


def units_shipped_per_day(
    *, sites: list[str], skus: list[str], rate: float = DEFAULT_RATE, seconds: int = 1800
) -> float:
    """Units the traffic at `rate` events/s dispatches per (site, SKU) and day, measured on a
    seeded dry run of the generator (no I/O): what `load_demo` sizes the demo's stock on."""
    shipped, _ = _dry_run(tuple(sites), tuple(skus), rate, seconds)
    return shipped / seconds * 86400 / (len(sites) * len(skus))


def counts_per_level_hour(
    *, sites: list[str], skus: list[str], rate: float = DEFAULT_RATE, seconds: int = 1800
) -> float:
    """Cycle counts the traffic at `rate` events/s sends per (site, SKU) and hour, on the same
    dry run: the cadence of the demo history's last hours of counts."""
    _, counted = _dry_run(tuple(sites), tuple(skus), rate, seconds)
    return counted / seconds * 3600 / (len(sites) * len(skus))


@functools.cache
def _dry_run(sites: tuple, skus: tuple, rate: float, seconds: int) -> tuple[int, int]:
    """(units dispatched, stock counts sent) by `seconds` of the traffic at `rate`, once the
    flow is full."""
    mix = SimulationMix(malformed=0.0, resend=0.0)  # neither moves stock
    simulator = FeedSimulator(sites=list(sites), skus=list(skus), seed=0, mix=mix)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    ordered: dict[str, int] = {}
    shipped = counted = 0
    owed = 0.0
    # Dispatches start a dispatch delay after the first orders: count them once the flow is full.
    warm_up = int(mix.dispatch_delay[1])
    for second in range(seconds + warm_up):
        owed += rate
        count = int(owed)
        owed -= count
        for events in simulator.tick(now=start + timedelta(seconds=second), count=count).values():
            for event in events:
                if event["type"] == "order.created":
                    ordered[event["order_id"]] = sum(line["qty"] for line in event["lines"])
                elif event["type"] == "order.dispatched":
                    units = ordered.pop(event["order_id"], 0)
                    shipped += units if second >= warm_up else 0
                elif event["type"] == "stock.counted" and second >= warm_up:
                    counted += 1
    return shipped, counted
