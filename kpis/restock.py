"""Restocking suggestions (`/api/restock`, the "Restock now" panel, the CSV, the alert kind).

For every (site, SKU) with a stock level: demand over the 28 days ending now (dispatched
minus returned, floored at 0; `kpis.demand`), the days its available stock covers at that
rate, whether it needs restocking (below its reorder point, or covering fewer days than the
site's lead time) and how much to order (the site's target days of demand plus the reorder
point, less what is available). docs/restocking.md gives the formulas with an example.

Arithmetic is exact on integers and fractions; only the two ratios become floats at the end,
so `suggested_qty` never rounds up a demand that is exactly whole.
"""

import datetime as dt
import math
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from django.conf import settings
from django.utils import timezone

from kpis.demand import DEMAND_DAYS, demand_28d
from ledger.exceptions import UnknownSite
from ledger.models import Site, SiteReorderPoint, StockLevel


@dataclass(frozen=True, slots=True)
class RestockLine:
    """One (site, SKU) as restocking sees it."""

    site: str
    sku: str
    available: int
    reorder_point: int | None
    demand_28d: int
    daily_demand: Fraction
    days_of_cover: Fraction | None
    needs_restock: bool
    suggested_qty: int

    def as_json(self) -> dict:
        return {
            "site": self.site,
            "sku": self.sku,
            "available": self.available,
            "reorder_point": self.reorder_point,
            "demand_28d": self.demand_28d,
            "daily_demand": float(self.daily_demand),
            "days_of_cover": None if self.days_of_cover is None else float(self.days_of_cover),
            "needs_restock": self.needs_restock,
            "suggested_qty": self.suggested_qty,
        }


def restock_line(
    *,
    site: str,
    sku: str,
    available: int,
    reorder_point: int | None,
    net_demand: int,
    lead_days: int,
    target_days: int,
) -> RestockLine:
    """Judge one pair from its available stock and its net 28-day demand."""
    demand = max(0, net_demand)
    daily_demand = Fraction(demand, DEMAND_DAYS)
    days_of_cover = Fraction(available) / daily_demand if demand else None
    needs_restock = (reorder_point is not None and available < reorder_point) or (
        days_of_cover is not None and days_of_cover < lead_days
    )
    suggested_qty = 0
    if needs_restock:
        suggested_qty = max(
            0, math.ceil(daily_demand * target_days) + (reorder_point or 0) - available
        )
    return RestockLine(
        site=site,
        sku=sku,
        available=available,
        reorder_point=reorder_point,
        demand_28d=demand,
        daily_demand=daily_demand,
        days_of_cover=days_of_cover,
        needs_restock=needs_restock,
        suggested_qty=suggested_qty,
    )


def urgency_key(line: RestockLine) -> tuple:
    """Most urgent first: fewest days of cover, pairs without demand last, then site, SKU."""
    no_demand = line.days_of_cover is None
    return (no_demand, line.days_of_cover if not no_demand else 0, line.site, line.sku)


def restock_lines(*, site: str | None = None, now: dt.datetime | None = None) -> list[RestockLine]:
    """The pairs (of one site, or all) that need restocking, most urgent first.

    Raises `UnknownSite` for a site code that names no site.
    """
    lines = []
    for site_code, sku_code, available, point, demand, lead, target in _pairs(site, now):
        # Most pairs need nothing: decided on integers before any line is built.
        below_point = point is not None and available < point
        if below_point or (demand and available * DEMAND_DAYS < lead * demand):
            lines.append(_line_of(site_code, sku_code, available, point, demand, lead, target))
    lines.sort(key=urgency_key)
    return lines


def running_out(
    *, days: Fraction | Decimal | int, site: str | None = None, now: dt.datetime | None = None
) -> list[RestockLine]:
    """The pairs whose available stock covers fewer than `days` days of demand (pairs without
    demand never run out), soonest first."""
    days = Fraction(days)
    # pair[2] is the available stock, pair[4] the demand: cover < days, on integers.
    lines = [
        _line_of(*pair)
        for pair in _pairs(site, now)
        if pair[4] and pair[2] * DEMAND_DAYS * days.denominator < days.numerator * pair[4]
    ]
    lines.sort(key=urgency_key)
    return lines


def fewest_days_of_cover(
    *, site: str | None = None, now: dt.datetime | None = None
) -> Fraction | None:
    """The fewest days of cover of any pair with demand (of one site, or all); None when no
    pair has had demand in the last 28 days."""
    fewest: tuple[int, int] | None = None  # (available, demand): cover = available * 28 / demand
    for _, _, available, _, demand, _, _ in _pairs(site, now):
        if demand and (fewest is None or available * fewest[1] < fewest[0] * demand):
            fewest = (available, demand)
    return None if fewest is None else Fraction(fewest[0] * DEMAND_DAYS, fewest[1])


def _line_of(
    site_code: str, sku_code: str, available: int, point, demand: int, lead: int, target: int
) -> RestockLine:
    """The line of one of `_pairs`' tuples."""
    return restock_line(
        site=site_code,
        sku=sku_code,
        available=available,
        reorder_point=point,
        net_demand=demand,
        lead_days=lead,
        target_days=target,
    )


def _pairs(site: str | None, now: dt.datetime | None) -> list[tuple]:
    """Every pair (of one site, or all) with a stock level: (site code, SKU code, available,
    reorder point, 28-day demand floored at 0, lead days, target days)."""
    now = now or timezone.now()
    sites = Site.objects.all() if site is None else Site.objects.filter(code=site)
    policies = {
        site_id: (
            code,
            settings.RESTOCK_LEAD_DAYS if lead is None else lead,
            settings.RESTOCK_TARGET_DAYS if target is None else target,
        )
        for site_id, code, lead, target in sites.values_list(
            "id", "code", "restock_lead_days", "restock_target_days"
        )
    }
    if site is not None and not policies:
        raise UnknownSite([site])
    site_id = next(iter(policies)) if site is not None else None
    levels = (
        StockLevel.objects.all() if site_id is None else StockLevel.objects.filter(site_id=site_id)
    )
    net = demand_28d(site_id=site_id, now=now)
    overrides = SiteReorderPoint.objects.all()
    if site_id is not None:
        overrides = overrides.filter(site_id=site_id)
    own_points = {
        (pair_site, sku_id): point
        for pair_site, sku_id, point in overrides.values_list("site_id", "sku_id", "reorder_point")
    }
    pairs = []
    for pair_site, sku_id, sku_code, sku_point, on_hand, reserved in levels.order_by().values_list(
        "site_id", "sku_id", "sku__code", "sku__reorder_point", "on_hand", "reserved"
    ):
        site_code, lead, target = policies[pair_site]
        pair = (pair_site, sku_id)
        pairs.append(
            (
                site_code,
                sku_code,
                on_hand - reserved,
                own_points.get(pair, sku_point),
                max(0, net.get(pair, 0)),
                lead,
                target,
            )
        )
    return pairs
