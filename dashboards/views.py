"""Dashboard pages: all sites, one site, a SKU's lineage."""

import csv
import re
from functools import cache
from pathlib import Path
from urllib.parse import quote

from django.conf import settings
from django.contrib import admin
from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET

from corrections.models import Correction, CountSheet
from corrections.selectors import movement_origins
from dashboards import panels, scorecard
from dashboards.live import refresh_seconds
from dashboards.panels import Scope
from kpis.as_of import as_of_parse
from kpis.restock import restock_lines
from kpis.windows import WINDOWS, UnknownWindow
from ledger.models import Site, Sku
from ledger.selectors import level_movements, site_codes, sites_ordered, sku_stock_levels
from slos.reads import slo_panel_rows

# The dashboard's plotly.js: the official "basic" bundle, vendored (docs/dashboard.md).
PLOTLY_JS = Path(settings.BASE_DIR) / "static" / "vendor" / "plotly-basic.min.js"
LINEAGE_PAGE_SIZE = 50
ROTATE_SECONDS_MIN = 10
# plotly.js adds a bundled stylesheet (MapLibre's, for map traces we never draw) as an inline
# <style> with content, which the Content-Security-Policy refuses; it skips that when an element
# with the stylesheet's id is already on the page, so the dashboard puts one there.
PLOTLY_INLINE_STYLE_ID = re.compile(
    r'getElementById\("([0-9a-f]{64})"\)\)\{var \w+=document\.createElement\("style"\)'
)


@cache
def plotly_inline_style_ids() -> tuple[str, ...]:
    """The ids of the inline stylesheets plotly.js would add unless present."""
    return tuple(PLOTLY_INLINE_STYLE_ID.findall(PLOTLY_JS.read_text(encoding="utf-8")))


@require_GET
def home(request):
    """All sites at a glance, live."""
    return _dashboard_render(request, site=None)


@require_GET
def site_dashboard(request, code: str):
    """One site, live."""
    site = Site.objects.filter(code=code).first()
    if site is None:
        return not_found(request, what="site", code=code)
    return _dashboard_render(request, site=site.code)


RESTOCK_CSV_COLUMNS = (
    "site",
    "sku",
    "suggested_qty",
    "available",
    "reorder_point",
    "demand_28d",
    "daily_demand",
    "days_of_cover",
)


@require_GET
def restock_csv(request, code: str):
    """A site's restocking suggestions, most urgent first, as CSV: a purchase order's lines."""
    site = get_object_or_404(Site, code=code)
    now = timezone.now()
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = (
        f'attachment; filename="restock-{site.code}-{now:%Y-%m-%d}.csv"'
    )
    writer = csv.writer(response)
    writer.writerow(RESTOCK_CSV_COLUMNS)
    for line in restock_lines(site=site.code, now=now):
        item = line.as_json()
        # Ratios rounded for a person; the API gives them exactly.
        item["daily_demand"] = f"{item['daily_demand']:.2f}"
        if item["days_of_cover"] is not None:
            item["days_of_cover"] = f"{item['days_of_cover']:.1f}"
        writer.writerow("" if item[name] is None else item[name] for name in RESTOCK_CSV_COLUMNS)
    return response


def not_found(request, *, what: str, code: str):
    """Our own 404 page naming the unknown site or SKU, with where to look instead (Django's
    technical page, shown with DEBUG on, is for developers, not for someone who mistyped)."""
    context = {"missing_what": what, "missing_code": code, "sites": sites_ordered()}
    return render(request, "404.html", context, status=404)


def _dashboard_render(request, *, site: str | None):
    notice = ""
    try:
        window = panels.window_parse(request.GET.get("window"))
    except UnknownWindow as error:
        window, notice = panels.DEFAULT_WINDOW, f"{error}. Showing {panels.DEFAULT_WINDOW}."
    kiosk = request.GET.get("kiosk") == "1"
    scope = Scope(site=site, window=window)
    as_of_given = request.GET.get("as_of", "")
    as_of = None
    if as_of_given:
        try:
            as_of = as_of_parse(as_of_given, now=timezone.now())
        except ValueError as error:
            as_of_given, notice = "", f"{error}. Showing live."
    context = {
        **panels.scope_context_build(scope, as_of=as_of),
        # Kept by the window and site links, so a frozen view stays at its instant.
        "as_of_given": as_of_given,
        "as_of_query": f"&as_of={quote(as_of_given)}" if as_of_given else "",
        "sites": sites_ordered(),
        "windows": list(WINDOWS),
        "charts_shown": panels.CHARTS.items(),
        "kiosk": kiosk,
        "notice": notice,
        # Three missed periodic refreshes and the page calls itself stale.
        "stale_after_ms": int(refresh_seconds() * 3 * 1000),
        "plotly_inline_style_ids": plotly_inline_style_ids(),
    }
    if kiosk:
        context.update(_kiosk_rotation(request, window=window))
    elif site is None:
        context["slo_rows"] = slo_panel_rows()  # the TV keeps to the floor's figures
    template = "dashboards/dashboard.html"
    if request.htmx and not request.htmx.history_restore_request:
        template += "#dashboard"  # the window selector swaps only the dashboard region
    return render(request, template, context)


def _kiosk_rotation(request, *, window: str) -> dict:
    """`?kiosk=1&rotate=<seconds>`: cycle through all sites then each site, on the TV."""
    try:
        seconds = int(request.GET.get("rotate", "0"))
    except ValueError:
        seconds = 0
    if seconds <= 0:
        return {}
    seconds = max(seconds, ROTATE_SECONDS_MIN)
    query = f"?kiosk=1&rotate={seconds}&window={window}"
    urls = [reverse("dashboards:home") + query] + [
        reverse("dashboards:site", args=[code]) + query for code in site_codes()
    ]
    return {"rotate_urls": urls, "rotate_seconds": seconds}


@require_GET
def courier_scorecard(request):
    """Couriers of one site or all sites over a window, sortable, live (`static/js/scorecard.js`
    reloads the table whenever the scope's live stream says something changed)."""
    notices = []
    site = request.GET.get("site") or None
    if site is not None and not Site.objects.filter(code=site).exists():
        return not_found(request, what="site", code=site)
    try:
        window = panels.window_parse(request.GET.get("window") or scorecard.DEFAULT_WINDOW)
    except UnknownWindow as error:
        window = scorecard.DEFAULT_WINDOW
        notices.append(f"{error}. Showing {window}.")
    try:
        sorting = scorecard.Sorting.parse(request.GET.get("sort"), request.GET.get("dir"))
    except scorecard.UnknownSort as error:
        sorting = scorecard.Sorting(*scorecard.DEFAULT_SORT)
        notices.append(f"{error}. Showing the most deliveries first.")
    context = {
        **scorecard.scorecard_build(site=site, window=window, sorting=sorting),
        "site": site,
        "window": window,
        "windows": list(WINDOWS),
        "sites": sites_ordered(),
        "kiosk": request.GET.get("kiosk") == "1",
        "notice": " ".join(notices),
        "currency": settings.INVENTORY_CURRENCY,
    }
    template = "dashboards/couriers.html"
    if request.htmx and not request.htmx.history_restore_request:
        template += "#scorecard"
    return render(request, template, context)


@require_GET
def sku_lineage(request, code: str):
    """The movements behind a stock level, newest first, with what caused each."""
    sku = Sku.objects.filter(code=code).first()
    if sku is None:
        return not_found(request, what="SKU", code=code)
    site_code = request.GET.get("site", "")
    levels = sku_stock_levels(sku)
    context = {"sku": sku, "levels": levels, "site": None, "level": None, "page": None}
    if site_code:
        site = Site.objects.filter(code=site_code).first()
        if site is None:
            return not_found(request, what="site", code=site_code)
        movements = level_movements(site_id=site.id, sku_id=sku.id)
        page = Paginator(movements, LINEAGE_PAGE_SIZE).get_page(request.GET.get("page"))
        page.object_list = list(page.object_list)
        origins = movement_origins(cause_refs={m.cause_ref for m in page.object_list})
        for movement in page.object_list:
            movement.origin = origins.get(movement.cause_ref)
        context.update(
            site=site,
            level=levels.filter(site=site).first(),
            page=page,
            # Link to a correction or count sheet only for who may open it (the admin decides).
            can_view_corrections=admin.site.get_model_admin(Correction).has_view_permission(
                request
            ),
            can_view_count_sheets=admin.site.get_model_admin(CountSheet).has_view_permission(
                request
            ),
        )
    return render(request, "dashboards/sku_lineage.html", context)


@require_GET
def slo_panel(request):
    """The SLO panel alone: the all-sites dashboard and the on-call console refresh it."""
    return render(request, "slos/_panel.html", {"slo_rows": slo_panel_rows()})
