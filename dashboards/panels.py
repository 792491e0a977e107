"""What a dashboard scope shows: gathered once, rendered for the page and for the live socket.

The page view and the live coalescer both call `scope_view_build`, so a page load and a live
update can never disagree. Numbers come only from `kpis.reads` (the /api/kpis contract);
the stock tables come from the stock levels.
"""

import math
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.template.loader import render_to_string
from django.utils import timezone

from dashboards import figures
from kpis.as_of import levels_at
from kpis.reads import kpis_compute
from kpis.restock import restock_page
from kpis.trends import TREND_SPANS, kpi_trends_compute
from kpis.windows import WINDOWS, UnknownWindow
from ledger.models import Site, Sku
from ledger.selectors import site_id_of, sites_with_stock_totals, stock_levels_lowest_available
from oncall.measures import KPI_KEY_OF_KIND
from oncall.models import KINDS_BREACHING_BELOW
from oncall.selectors import kpi_alert_rules

DEFAULT_WINDOW = "1h"
WINDOW_SPANS = {window: timedelta(seconds=seconds) for window, seconds in WINDOWS.items()}
LOWEST_STOCK_ROWS = 15
RESTOCK_ROWS = 10  # the "Restock now" panel: the most urgent; the CSV has them all
# A feed with no applied event for this long gets a "stale" badge.
FEED_STALE_AFTER_S = 300

# (key of /api/kpis, label, format, unit shown under the value). Formats: see dashboard_format.
KPI_TILES = (
    ("inventory_turnover", "Inventory turnover", "decimal", "turns / year"),
    ("order_accuracy", "Order accuracy", "percent", "of deliveries"),
    ("deliveries", "Deliveries", "integer", "in window"),
    ("cost_per_shipment", "Cost per shipment", "money", ""),
    ("fulfillment_p50_s", "Fulfillment time p50", "duration", "created → delivered"),
    ("fulfillment_p90_s", "Fulfillment time p90", "duration", "created → delivered"),
    ("stock_mismatch_rate", "Stock mismatch rate", "percent", "of counts"),
    ("counts", "Counts", "integer", "in window"),
    ("mismatch_units", "Mismatch units", "integer", "abs. difference"),
    ("mismatch_value", "Mismatch value", "money", "at unit cost"),
    ("stockouts", "Stockouts", "integer", "SKU-sites now"),
    ("negative_stock", "Negative stock", "integer", "SKU-sites now"),
    ("below_reorder_point", "Below reorder point", "integer", "SKU-sites now"),
    ("reconciliation_skew", "Reconciliation skew", "skew", "of snapshot lines"),
    ("reconciliation_skew_units", "Skew units", "integer", "snapshot vs on hand"),
)
# How a tile judges its value when no alert rule covers it: (direction, watch, bad), read as
# alert rules read their threshold: "above" is trouble when the value is above it (stockouts
# above 0: watch; above 9: bad), "below" when under it. Settings DASHBOARD_TILE_THRESHOLDS
# replaces entries. A tile absent here and without a rule is not judged: volumes such as
# deliveries or counts have no right value. docs/dashboard.md explains the choice.
DEFAULT_TILE_THRESHOLDS = {
    "order_accuracy": ("below", 0.98, 0.95),
    "stock_mismatch_rate": ("above", 0.02, 0.05),
    "stockouts": ("above", 0, 9),
    "negative_stock": ("above", 0, 0),
    "below_reorder_point": ("above", 0, 24),
    "reconciliation_skew": ("above", 0.02, 0.05),
}
# An alert rule's threshold is where a tile turns "bad"; "watch" starts this share of the way
# towards it (above: 80 % of the threshold; below: half-way between the threshold and 100 %).
WATCH_SHARE = 0.8
# Tiles of the stock as it stands now, not of a window: kpis_compute gives them for the present
# only, so they show no change against a previous window (that would need the stock as it stood).
TILES_OF_NOW = {
    "stockouts",
    "negative_stock",
    "below_reorder_point",
    "reconciliation_skew",
    "reconciliation_skew_units",
}
TILE_STATES = {"ok": "Good", "watch": "Watch", "bad": "Bad"}
# The trend series (kpis.trends) drawn as each tile's sparkline: one point per bucket of the
# window (minutes on 1h, hours on 24h and 7d, days on 30d), the bucket under way left out (it
# holds only part of its time: a dip at the live edge, not a change). Tiles of percentiles and
# of the stock as it stands have no series.
SPARK_BUCKET_NAMES = {60: "minute", 3600: "hour", 86400: "day"}
TILE_SPARKLINES = {
    "inventory_turnover": "turnover",
    "order_accuracy": "accuracy",
    "deliveries": "deliveries",
    "cost_per_shipment": "cost_per_shipment",
    "stock_mismatch_rate": "stock_mismatch_rate",
    "counts": "counts",
    "mismatch_units": "mismatch_units",
    "mismatch_value": "mismatch_value",
}

# Element id -> accessible name (the figure's own title is drawn in SVG, not read out).
CHARTS = {
    "chart-orders-per-minute": "Orders per minute",
    "chart-turnover-accuracy": "Inventory turnover and order accuracy over time",
    "chart-cost-per-shipment": "Cost per shipment over time",
    "chart-channel-cost": "Cost per shipment by channel",
    "chart-mismatch-by-site": "Stock mismatch rate by site",
    "chart-worst-stockouts": "Worst stockouts: lowest available SKU-sites",
}


@dataclass(frozen=True, slots=True)
class Scope:
    """What one dashboard shows: one site or all sites (None), over a window."""

    site: str | None
    window: str

    @property
    def key(self) -> str:
        return f"{self.site or '*'}|{self.window}"

    def covers(self, site_codes: list[str] | None) -> bool:
        """Whether a change at these sites (None: unknown or all) shows on this scope."""
        return site_codes is None or self.site is None or self.site in site_codes


def window_parse(value: str | None) -> str:
    """Return a known window; raise UnknownWindow naming the valid ones."""
    if not value:
        return DEFAULT_WINDOW
    if value not in WINDOWS:
        raise UnknownWindow(value)
    return value


def scope_context_build(
    scope: Scope, *, now: datetime | None = None, as_of: datetime | None = None
) -> dict:
    """Gather everything one scope shows (the expensive part: done once per update).

    With `as_of` (a past instant): everything as it stood then (docs/as_of.md), frozen."""
    if as_of is not None:
        return _frozen_context_build(scope, as_of)
    now = now or timezone.now()
    # With the channel breakdown: the cost per shipment by channel chart.
    kpis = kpis_compute(site=scope.site, window=scope.window, now=now, by="channel")
    # The window of the same length just before: each tile's change (a few ms: rollups).
    previous = kpis_compute(
        site=scope.site, window=scope.window, now=now - WINDOW_SPANS[scope.window]
    )
    trends = kpi_trends_compute(site=scope.site, window=scope.window, now=now)
    site_totals = [] if scope.site else sites_with_stock_totals()
    lowest_stock = stock_levels_lowest_available(site_code=scope.site, limit=LOWEST_STOCK_ROWS)
    restock_count, restock = _restock_panel(scope, now)
    return {
        "scope": scope,
        "kpis": kpis,
        "tiles": kpi_tiles(
            kpis, previous=previous, thresholds=tile_thresholds(scope), trends=trends
        ),
        "feeds": feed_rows(kpis.get("feeds") or []),
        "site_totals": site_totals,
        "lowest_stock": lowest_stock,
        "restock": restock,
        "restock_count": restock_count,
        "charts": charts_build(trends, channels=kpis.get("breakdown") or []),
        "currency": settings.INVENTORY_CURRENCY,
        "spark_bucket": SPARK_BUCKET_NAMES[TREND_SPANS[scope.window]],
        "as_of": now,
    }


@dataclass
class RestockMemo:
    """The "Restock now" panel of one watched scope as last computed on the live path (the
    hub keeps one per scope and lends it through `restock_memo`)."""

    computed_at: float = -math.inf  # monotonic
    count: int = 0
    lines: list = field(default_factory=list)
    reused: bool = False  # the last view showed it without computing it


# Set by the live hub around a view computation; unset (page loads, CSV) the panel is computed.
restock_memo: ContextVar[RestockMemo | None] = ContextVar("restock_memo", default=None)


def restock_interval_s() -> float:
    """On the live path the panel is computed at most this often per scope (the hub computes it
    again once the interval is over if a view in between reused it)."""
    return getattr(settings, "DASHBOARD_RESTOCK_INTERVAL_S", 2.0)


def _restock_panel(scope: Scope, now: datetime) -> tuple[int, list]:
    """(how many pairs need restocking, the most urgent) of the scope: computed, or on the live
    path reused if computed less than `restock_interval_s` ago."""
    memo = restock_memo.get()
    if memo is not None:
        memo.reused = time.monotonic() - memo.computed_at < restock_interval_s()
        if memo.reused:
            return memo.count, memo.lines
    count, lines = restock_page(site=scope.site, now=now, size=RESTOCK_ROWS)
    if memo is not None:
        memo.computed_at, memo.count, memo.lines = time.monotonic(), count, lines
    return count, lines


def _frozen_context_build(scope: Scope, as_of: datetime) -> dict:
    """`scope_context_build` at a past instant: tiles, charts and tables from the state then."""
    kpis = kpis_compute(site=scope.site, window=scope.window, as_of=as_of, by="channel")
    previous = kpis_compute(
        site=scope.site, window=scope.window, as_of=as_of - WINDOW_SPANS[scope.window]
    )
    trends = kpi_trends_compute(site=scope.site, window=scope.window, now=as_of, as_of=True)
    levels = levels_at(at=as_of, site_id=site_id_of(scope.site))
    sites = {site.id: site for site in Site.objects.order_by("code")}
    skus = Sku.objects.only("code").in_bulk({sku for _, sku in levels})
    rows = [
        FrozenLevel(sites[site], skus[sku], level.on_hand, level.reserved)
        for (site, sku), level in levels.items()
    ]
    rows.sort(key=lambda row: (row.available, row.site.code, row.sku.code))
    site_totals = []
    if not scope.site:
        for site in sites.values():
            own = [row for row in rows if row.site.id == site.id]
            site.skus = len(own)
            site.on_hand = sum(row.on_hand for row in own)
            site.reserved = sum(row.reserved for row in own)
            site_totals.append(site)
    return {
        "scope": scope,
        "kpis": kpis,
        "tiles": kpi_tiles(kpis, previous=previous, thresholds=tile_thresholds(scope)),
        "feeds": [],
        "site_totals": site_totals,
        "lowest_stock": rows[:LOWEST_STOCK_ROWS],
        "restock": [],  # suggestions are for now only (the template says so)
        "restock_count": 0,
        "charts": charts_build(trends, channels=kpis.get("breakdown") or []),
        "currency": settings.INVENTORY_CURRENCY,
        "as_of": as_of,
        "frozen": True,
    }


@dataclass(frozen=True, slots=True)
class FrozenLevel:
    """A stock level at a past instant, shaped as the stock table reads a `StockLevel`."""

    site: Site
    sku: Sku
    on_hand: int
    reserved: int

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved


def tile_thresholds(scope: Scope) -> dict[str, tuple[str, float, float]]:
    """How each tile is judged for this scope: defaults, then settings, then alert rules.

    An enabled alert rule on the tile's KPI for exactly this scope (its site, or all sites)
    wins, preferring one on the shown window; the tile turns "bad" where the rule breaches.
    """
    thresholds = {
        **DEFAULT_TILE_THRESHOLDS,
        **getattr(settings, "DASHBOARD_TILE_THRESHOLDS", {}),
    }
    rules = kpi_alert_rules(site_code=scope.site)
    # Rules on the shown window last, so they win.
    for rule in sorted(rules, key=lambda rule: rule.window == scope.window):
        bad = float(rule.threshold)
        if rule.kind in KINDS_BREACHING_BELOW:
            thresholds[KPI_KEY_OF_KIND[rule.kind]] = ("below", bad + (1 - bad) * 0.5, bad)
        else:
            thresholds[KPI_KEY_OF_KIND[rule.kind]] = ("above", bad * WATCH_SHARE, bad)
    return thresholds


def tile_state(value, judged_by: tuple[str, float, float] | None) -> str | None:
    """ "ok", "watch" or "bad"; None when the tile is not judged or has no value."""
    if judged_by is None or not isinstance(value, int | float) or isinstance(value, bool):
        return None
    direction, watch, bad = judged_by
    if direction == "below":
        return "bad" if value < bad else "watch" if value < watch else "ok"
    return "bad" if value > bad else "watch" if value > watch else "ok"


def _number_of(value):
    if isinstance(value, dict):  # the skew may come as {"share": .., "units": ..}
        value = value.get("share")
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def tile_sparkline(key: str, trends: dict | None) -> list[float | None]:
    """The tile's trend values, oldest first (None where a bucket has no value)."""
    points = (trends or {}).get(TILE_SPARKLINES.get(key, ""), [])[:-1]
    return [point["value"] for point in points]


def kpi_tiles(
    kpis: dict,
    *,
    previous: dict | None = None,
    thresholds: dict | None = None,
    trends: dict | None = None,
) -> list[dict]:
    thresholds = DEFAULT_TILE_THRESHOLDS if thresholds is None else thresholds
    tiles = []
    for key, label, value_format, unit in KPI_TILES:
        value = kpis.get(key)
        number = _number_of(value)
        before = None if key in TILES_OF_NOW else _number_of((previous or {}).get(key))
        change = None if number is None or before is None else number - before
        state = tile_state(number, thresholds.get(key))
        tiles.append(
            {
                "key": key,
                "label": label,
                "value": value,
                "format": value_format,
                "unit": unit,
                "state": state,
                "state_label": TILE_STATES.get(state, ""),
                "alarming": state == "bad",
                "sparkline": tile_sparkline(key, trends),
                "change": change,
                "direction": None
                if change is None
                else "up"
                if change > 0
                else "down"
                if change < 0
                else "flat",
            }
        )
    return tiles


def feed_rows(feeds: list[dict]) -> list[dict]:
    return [
        {
            **feed,
            "stale": feed.get("freshness_s") is None
            or feed.get("freshness_s") > FEED_STALE_AFTER_S,
        }
        for feed in feeds
    ]


TIME_CHARTS = ("chart-orders-per-minute", "chart-turnover-accuracy", "chart-cost-per-shipment")


def charts_build(trends: dict, *, channels: list[dict] | None = None) -> dict[str, dict]:
    """Plotly figures as JSON-safe dicts, keyed by the id of the element that shows each;
    `channels`: the `by=channel` breakdown of the window.

    The time axes: day points are labelled with their dates, as days of the zone they follow
    (one site's local days, or UTC); other points are instants, which the page shows in the
    viewer's own time zone (`meta.local_times`: dashboard.js converts them and says which)."""
    charts = _charts_build(trends, channels=channels)
    day_zone = trends.get("day_zone")
    for chart_id in TIME_CHARTS:
        layout = charts[chart_id]["layout"]
        if day_zone:
            for trace in charts[chart_id]["data"]:
                trace["x"] = [moment[:10] for moment in trace["x"]]
            layout["xaxis"]["title"]["text"] = f"Day ({day_zone})"
        else:
            layout["meta"] = {"local_times": True}
    return charts


def _charts_build(trends: dict, *, channels: list[dict] | None) -> dict[str, dict]:
    return {
        "chart-orders-per-minute": figures.orders_per_minute_figure(
            trends.get("orders_per_minute") or []
        ),
        "chart-turnover-accuracy": figures.turnover_accuracy_figure(
            turnover=trends.get("turnover") or [], accuracy=trends.get("accuracy") or []
        ),
        "chart-cost-per-shipment": figures.cost_per_shipment_figure(
            trends.get("cost_per_shipment") or [], currency=settings.INVENTORY_CURRENCY
        ),
        "chart-channel-cost": figures.channel_cost_figure(
            channels or [], currency=settings.INVENTORY_CURRENCY
        ),
        "chart-mismatch-by-site": figures.mismatch_by_site_figure(
            trends.get("mismatch_by_site") or []
        ),
        "chart-worst-stockouts": figures.worst_stockouts_figure(
            trends.get("worst_stockouts") or []
        ),
    }


LIVE_PARTIALS = ("as-of", "kpi-tiles", "feeds", "stock", "restock")


def live_fragments_render(context: dict) -> str:
    """Render the out-of-band fragments a live update swaps into the page (htmx hx-swap-oob)."""
    oob_context = {**context, "oob": True}
    return "".join(
        render_to_string(f"dashboards/dashboard.html#{name}", oob_context) for name in LIVE_PARTIALS
    )


def alerts_fragment_render(scope: Scope) -> str:
    return render_to_string("dashboards/_alerts.html", {"scope": scope, "oob": True})


def scope_view_build(scope: Scope) -> dict:
    """Compute and render one scope for the live socket: a JSON-safe payload."""
    context = scope_context_build(scope)
    return {
        "type": "view",
        "scope": scope.key,
        "as_of": context["as_of"].isoformat(),
        "html": live_fragments_render(context) + alerts_fragment_render(scope),
        "charts": context["charts"],
    }
