"""The orders behind the demo history's last hour of sales: order lines and their deliveries,
as the rollups would have them from the feeds, so the orders-per-minute chart and the delivery
tiles (accuracy, cost per shipment, fulfillment times) read a business from `make run`'s first
minute instead of filling in as the simulator's first couriers arrive (~6 minutes).

Only the last ORDERS_HISTORY: a fact per order line and per delivery, five weeks of them would
be millions of rows for a demo. The ledger's sales (demo/history.py) stay the stock truth; these
rows are KPI facts only, at the simulator's order rate and courier times.

The deliveries of the orders the history dispatched that are still on the road at the start are
recorded with their delivery times ahead of `now`, the couriers' schedule: every read ends at its
`now`, so each counts once its time has come. Left out, the demo had no delivery for its first
five minutes (the simulator's first orders are delivered 5 to 45 minutes after their dispatch)
and fewer than the steady rate for 45: a Deliveries sparkline falling to zero and gaps in the
accuracy and cost per shipment charts, at every start.
"""

import random
from datetime import datetime, timedelta
from decimal import Decimal

from ingest.simulation import CHANNELS, SimulationMix, order_rate
from kpis.rollups import DeliveryFact, OrderLineFact

ORDERS_HISTORY = timedelta(hours=1)
ACCURATE_SHARE = 0.99  # the simulator's (SimulationMix.inaccurate)
SHIPPING_COST = (2.5, 14.0)


def demo_order_facts(
    *,
    site_ids: list[int],
    sku_ids: list[int],
    rate: float,
    now: datetime,
    sales_end: datetime,
    seed: int = 11,
) -> tuple[list[OrderLineFact], list[DeliveryFact]]:
    """Order lines of the orders created in the last ORDERS_HISTORY and dispatched by
    `sales_end` (the history's last sale), and the deliveries of the orders dispatched by then
    and created over the longest courier time before `now` (some after `now`).

    The orders dispatched after `sales_end` are the simulator's: its warm start takes over from
    the ledger's newest dispatch (`FeedSimulator.warm_start`). Cut at `now` instead, those of
    the history's last half minute were counted twice, a bump in the orders per minute of the
    minutes before the start."""
    rng = random.Random(seed)
    mix = SimulationMix()
    longest = timedelta(seconds=mix.dispatch_delay[1] + mix.delivery_delay[1])
    lines, deliveries = [], []
    per_site_minute = order_rate(rate, mix) * 60 / len(site_ids)
    minute = now - ORDERS_HISTORY - longest
    number = 0
    while minute < now:
        for site_id in site_ids:
            for _ in range(round(per_site_minute * rng.uniform(0.8, 1.2))):
                number += 1
                created = minute + timedelta(seconds=rng.uniform(0, 60))
                if created >= now:
                    continue
                order_id = f"demo-{number}"
                dispatched = created + timedelta(seconds=rng.uniform(*mix.dispatch_delay))
                if dispatched > sales_end:
                    continue  # still under way: the simulator's warm start sends those
                if created >= now - ORDERS_HISTORY:
                    for sku_id in rng.sample(sku_ids, k=min(len(sku_ids), rng.randint(1, 5))):
                        qty = rng.choice((1, 1, 1, 2, 2, 3, 4))
                        lines.append(OrderLineFact(site_id, sku_id, created, qty, order_id))
                delivered = dispatched + timedelta(seconds=rng.uniform(*mix.delivery_delay))
                # Delivered after `now` too, at its courier's time: the simulator never saw these
                # orders, so it cannot deliver them (ingest holds a delivery of an unknown order)
                deliveries.append(
                    DeliveryFact(
                        site_id=site_id,
                        occurred_at=delivered,
                        accurate=rng.random() < ACCURATE_SHARE,
                        shipping_cost=Decimal(f"{rng.uniform(*SHIPPING_COST):.2f}"),
                        order_created_at=created,
                        channel=rng.choice(CHANNELS),
                        courier_id=f"courier-{rng.randint(1, 40)}",
                    )
                )
        minute += timedelta(minutes=1)
    return lines, deliveries
