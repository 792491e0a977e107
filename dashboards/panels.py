"""What a dashboard scope shows: gathered once, rendered for the page and for the live socket.

The page view and the live coalescer both call `scope_view_build`, so a page load and a live
update can never disagree. Numbers come only from `dashboards.kpis` (the /api/kpis contract);
the stock tables come from the stock levels.
"""

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db.models import Count, F, Sum
from django.template.loader import render_to_string
from django.utils import timezone

from dashboards import figures
from dashboards.kpis import WINDOWS, kpi_trends_compute, kpis_compute
from inventory_ops.models import Site, StockLevel

DEFAULT_WINDOW = "1h"
LOWEST_STOCK_ROWS = 15
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
# Tiles whose value above zero is trouble: shown with a warning style (never colour alone).
ALARMING_WHEN_POSITIVE = {"stockouts", "negative_stock", "below_reorder_point"}

# Element id -> accessible name (the figure's own title is drawn in SVG, not read out).
CHARTS = {
    "chart-orders-per-minute": "Orders per minute",
    "chart-turnover-accuracy": "Inventory turnover and order accuracy over time",
    "chart-cost-per-shipment": "Cost per shipment over time",
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
    """Return a known window; raise ValueError naming the valid ones."""
    if not value:
        return DEFAULT_WINDOW
    if value not in WINDOWS:
        raise ValueError(f"unknown window {value!r}; use one of {', '.join(WINDOWS)}")
    return value


def scope_context_build(scope: Scope, *, now: datetime | None = None) -> dict:
    """Gather everything one scope shows (the expensive part: done once per update)."""
    now = now or timezone.now()
    kpis = kpis_compute(site=scope.site, window=scope.window, now=now)
    trends = kpi_trends_compute(site=scope.site, window=scope.window, now=now)
    # Not StockLevel.with_available(): its "available" annotation collides with the model's
    # read-only `available` property (AttributeError on load).
    levels = StockLevel.objects.annotate(available_units=F("on_hand") - F("reserved"))
    levels = levels.select_related("site", "sku")
    if scope.site:
        levels = levels.filter(site__code=scope.site)
        site_totals = []
    else:
        site_totals = list(
            Site.objects.annotate(
                skus=Count("stock_levels"),
                on_hand=Sum("stock_levels__on_hand"),
                reserved=Sum("stock_levels__reserved"),
            ).order_by("code")
        )
    lowest_first = levels.order_by("available_units", "site__code", "sku__code")
    lowest_stock = list(lowest_first[:LOWEST_STOCK_ROWS])
    return {
        "scope": scope,
        "kpis": kpis,
        "tiles": kpi_tiles(kpis),
        "feeds": feed_rows(kpis.get("feeds") or []),
        "site_totals": site_totals,
        "lowest_stock": lowest_stock,
        "charts": charts_build(trends),
        "currency": settings.INVENTORY_CURRENCY,
        "as_of": now,
    }


def kpi_tiles(kpis: dict) -> list[dict]:
    tiles = []
    for key, label, value_format, unit in KPI_TILES:
        value = kpis.get(key)
        alarming = key in ALARMING_WHEN_POSITIVE and isinstance(value, int | float) and value > 0
        tiles.append(
            {
                "key": key,
                "label": label,
                "value": value,
                "format": value_format,
                "unit": unit,
                "alarming": alarming,
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


def charts_build(trends: dict) -> dict[str, dict]:
    """Plotly figures as JSON-safe dicts, keyed by the id of the element that shows each."""
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
        "chart-mismatch-by-site": figures.mismatch_by_site_figure(
            trends.get("mismatch_by_site") or []
        ),
        "chart-worst-stockouts": figures.worst_stockouts_figure(
            trends.get("worst_stockouts") or []
        ),
    }


LIVE_PARTIALS = ("as-of", "kpi-tiles", "feeds", "stock")


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
