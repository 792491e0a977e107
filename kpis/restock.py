"""Restocking suggestions (`/api/restock`, the "Restock now" panel, the CSV, the alert kind).

For every (site, SKU) with a stock level: demand over the 28 days ending now (dispatched
minus returned, floored at 0; `kpis.demand`), the days its available stock covers at that
rate, whether it needs restocking (below its reorder point, or covering fewer days than the
site's lead time) and how much to order (the site's target days of demand plus the reorder
point, less what is available). docs/restocking.md gives the formulas with an example.

Arithmetic is exact on integers and fractions; only the two ratios become floats at the end,
so `suggested_qty` never rounds up a demand that is exactly whole.

The reads come from the restocking rows the writers keep (`kpis.restock_state`): the pairs
that need restocking, in urgency order, from an index, and the few pairs whose demand moved
at the edges of the window since the rows were judged, judged again here. A `now` whose
window starts before the rows' window (a read of the past) computes every pair from the
stock levels and the demand buckets (`_pairs`), as the reference does.
"""

import datetime as dt
import math
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from django.conf import settings
from django.db import connection
from django.utils import timezone

from kpis.demand import DEMAND_DAYS, DEMAND_WINDOW, demand_28d
from kpis.restock_state import (
    READ_ADVANCE_LAG,
    STATE,
    WINDOW,
    instants_params,
    moment_of,
    restock_window_advance,
    window_edges_sql,
    window_read,
)
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


def restock_page(
    *,
    site: str | None = None,
    now: dt.datetime | None = None,
    first: int = 0,
    size: int | None = None,
) -> tuple[int, list[RestockLine]]:
    """(how many pairs need restocking, the `size` most urgent from the `first`; all without
    `size`), of one site or all. Raises `UnknownSite` for a site code that names no site."""
    now = now or timezone.now()
    state = _state_of(site, now)
    if state is None:
        lines = _lines_from_pairs(site, now)
        return len(lines), lines[first:] if size is None else lines[first : first + size]
    edges, stored_needs = state.edges_judged()
    exact = [line for line in edges.values() if line.needs_restock]
    limit = None if size is None else first + size + stored_needs
    lines = [line for line in state.needing(limit) if (line.site, line.sku) not in edges]
    lines += exact
    lines.sort(key=urgency_key)
    if size is None:
        return len(lines), lines[first:]
    return state.needing_count() - stored_needs + len(exact), lines[first : first + size]


def restock_lines(*, site: str | None = None, now: dt.datetime | None = None) -> list[RestockLine]:
    """The pairs (of one site, or all) that need restocking, most urgent first.

    Raises `UnknownSite` for a site code that names no site.
    """
    return restock_page(site=site, now=now)[1]


def running_out(
    *, days: Fraction | Decimal | int, site: str | None = None, now: dt.datetime | None = None
) -> list[RestockLine]:
    """The pairs whose available stock covers fewer than `days` days of demand (pairs without
    demand never run out), soonest first."""
    days = Fraction(days)
    now = now or timezone.now()

    def short(line: RestockLine) -> bool:  # cover < days, on integers
        return bool(line.demand_28d) and (
            line.available * DEMAND_DAYS * days.denominator < days.numerator * line.demand_28d
        )

    state = _state_of(site, now)
    if state is None:
        lines = [line for line in map(_line_of, _pairs(site, now)) if short(line)]
    else:
        edges, _ = state.edges_judged()
        # A float bound a little above: the exact test on integers decides.
        stored = state.rows("demand > 0 AND cover < %s", [float(days) * (1 + 1e-9) + 1e-9])
        lines = [line for line in stored if (line.site, line.sku) not in edges and short(line)]
        lines += [line for line in edges.values() if short(line)]
    lines.sort(key=urgency_key)
    return lines


def fewest_days_of_cover(
    *, site: str | None = None, now: dt.datetime | None = None
) -> Fraction | None:
    """The fewest days of cover of any pair with demand (of one site, or all); None when no
    pair has had demand in the last 28 days."""
    now = now or timezone.now()
    state = _state_of(site, now)
    if state is None:
        covers = [
            line.days_of_cover for line in map(_line_of, _pairs(site, now)) if line.demand_28d
        ]
    else:
        edges, _ = state.edges_judged()
        # The pairs judged again may hide the stored lowest: as many more as there are of them.
        stored = state.rows("demand > 0", order="cover", limit=len(edges) + 1)
        covers = [line.days_of_cover for line in stored if (line.site, line.sku) not in edges]
        covers += [line.days_of_cover for line in edges.values() if line.demand_28d]
    return min(covers, default=None)


class _State:
    """The restocking rows of a scope, for a read at `now` (see `_state_of`)."""

    def __init__(self, site_id, policies: dict, window_start: dt.datetime, now: dt.datetime):
        self.site_id = site_id
        self.policies = policies  # site id -> (code, lead days, target days)
        self.window_start = window_start
        self.now = now
        self._edges = None

    def _scope(self, condition: str, params: list | None = None) -> tuple[str, list]:
        if self.site_id is None:
            return f"WHERE {condition}", list(params or [])
        return f"WHERE site_id = %s AND {condition}", [self.site_id, *(params or [])]

    def _line(self, site_id, sku_code, available, point, demand) -> RestockLine:
        code, lead, target = self.policies[site_id]
        return _line_of((code, sku_code, available, point, max(0, demand), lead, target))

    def rows(
        self, condition: str, params: list | None = None, *, order: str = "", limit=None
    ) -> list[RestockLine]:
        """Lines of the stored rows matching `condition` (SQL), judged on their stored demand."""
        where, params = self._scope(condition, params)
        order_by = f" ORDER BY {order}" if order else ""
        if limit is not None:
            order_by += f" LIMIT {int(limit)}"
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT site_id, sku_code, available, reorder_point, demand "  # noqa: S608
                f"FROM {STATE} {where}{order_by}",
                params,
            )
            return [self._line(*row) for row in cursor.fetchall()]

    def needing(self, limit: int | None) -> list[RestockLine]:
        """The stored pairs that need restocking, most urgent first (from the index)."""
        codes = "sku_code" if self.site_id is not None else "site_code, sku_code"
        return self.rows("needs", order=f"cover NULLS LAST, {codes}", limit=limit)

    def needing_count(self) -> int:
        where, params = self._scope("needs")
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT COUNT(*) FROM {STATE} {where}", params)  # noqa: S608
            return cursor.fetchone()[0]

    def edges_judged(self) -> tuple[dict[tuple[str, str], RestockLine], int]:
        """The pairs with movements at the window's edges, judged on their exact demand, and
        how many of them the stored rows count as needing restocking."""
        if self._edges is None:
            sql, params = window_edges_sql(self.site_id)
            params += instants_params(self.window_start, self.now - DEMAND_WINDOW, self.now)
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT r.site_id, r.sku_code, r.available, r.reorder_point, "  # noqa: S608
                    f"r.demand - e.units, r.needs FROM ({sql}) AS e "
                    f"JOIN {STATE} r ON r.site_id = e.site_id AND r.sku_id = e.sku_id",
                    params,
                )
                rows = cursor.fetchall()
            lines = {}
            for *values, stored_needs in rows:
                line = self._line(*values)
                lines[(line.site, line.sku)] = (line, bool(stored_needs))
            self._edges = (
                {pair: line for pair, (line, _) in lines.items()},
                sum(1 for _, needed in lines.values() if needed),
            )
        return self._edges


def _state_of(site: str | None, now: dt.datetime) -> _State | None:
    """The restocking rows of the scope if they can answer a read at `now` (their window starts
    at or before `now - 28 days`), else None. Moves the window first if no write did for long,
    or if the deployment's default lead time changed. Raises `UnknownSite`."""
    where, params = ("", []) if site is None else (" WHERE s.code = %s", [site])
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT s.id, s.code, s.restock_lead_days, s.restock_target_days, w.start, "  # noqa: S608
            f"w.lead_default FROM {Site._meta.db_table} s LEFT JOIN {WINDOW} w ON w.id = 1{where}",
            params,
        )
        rows = cursor.fetchall()
    if site is not None and not rows:
        raise UnknownSite([site])
    policies = {
        site_id: (
            code,
            settings.RESTOCK_LEAD_DAYS if lead is None else lead,
            settings.RESTOCK_TARGET_DAYS if target is None else target,
        )
        for site_id, code, lead, target, _, _ in rows
    }
    window = (moment_of(rows[0][4]), rows[0][5]) if rows and rows[0][4] is not None else None
    if window is None:
        return None
    start, lead_default = window
    if lead_default != settings.RESTOCK_LEAD_DAYS or (
        min(now, timezone.now()) - DEMAND_WINDOW - start > READ_ADVANCE_LAG
    ):
        restock_window_advance(now)  # never past this read's window start
        window = window_read()
        if window is None or window[1] != settings.RESTOCK_LEAD_DAYS:
            return None  # not moved (logged): answered from the levels this time
        start = window[0]
    if now - DEMAND_WINDOW < start:
        return None
    return _State(None if site is None else rows[0][0], policies, start, now)


def _lines_from_pairs(site: str | None, now: dt.datetime) -> list[RestockLine]:
    """Every pair that needs restocking, computed from the stock levels and the demand
    buckets (reads of the past; the reference the rows are kept equal to)."""
    lines = []
    for site_code, sku_code, available, point, demand, lead, target in _pairs(site, now):
        # Most pairs need nothing: decided on integers before any line is built.
        below_point = point is not None and available < point
        if below_point or (demand and available * DEMAND_DAYS < lead * demand):
            lines.append(_line_of((site_code, sku_code, available, point, demand, lead, target)))
    lines.sort(key=urgency_key)
    return lines


def _line_of(pair: tuple) -> RestockLine:
    """The line of one of `_pairs`' tuples."""
    site_code, sku_code, available, point, demand, lead, target = pair
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
