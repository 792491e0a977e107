"""The stock browser: every stock level, searchable by SKU code or name, filtered by site, paged.

Read-only and for every logged-in role (stock staff look a SKU up here without the admin).
"""

from django.core.paginator import Paginator
from django.shortcuts import render
from django.views.decorators.http import require_GET

from ledger.selectors import sites_ordered, stock_levels_search

STOCK_PAGE_SIZE = 50
SEARCH_MAX_CHARS = 100


@require_GET
def stock_browser(request):
    """`/stock/?q=<SKU code or name>&site=<code>&page=<n>`."""
    text = request.GET.get("q", "").strip()
    site_code = request.GET.get("site", "").strip()
    problems = []
    if len(text) > SEARCH_MAX_CHARS:
        problems.append(
            f"The search is {len(text)} characters long; use at most {SEARCH_MAX_CHARS}."
        )
        text = text[:SEARCH_MAX_CHARS]
    sites = list(sites_ordered())
    site = next((candidate for candidate in sites if candidate.code == site_code), None)
    if site_code and site is None:
        problems.append(f"There is no site with the code {site_code!r}; showing every site.")
        site_code = ""
    levels = stock_levels_search(text=text, site=site)
    page = Paginator(levels, STOCK_PAGE_SIZE).get_page(request.GET.get("page"))
    for level in page.object_list:
        point = level.applied_reorder_point
        level.stock_state = (
            "out"
            if level.available_units <= 0
            else "low"
            if point is not None and level.available_units < point
            else ""
        )
    context = {
        "text": text,
        "site_code": site_code,
        "sites": sites,
        "page": page,
        "problems": problems,
    }
    return render(request, "dashboards/stock.html", context)
