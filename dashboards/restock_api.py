"""Restocking read API (`/api/restock`): what to reorder, most urgent first.

Same access and paging as `/api/stock` (a logged-in session or a feed token; `limit`,
`offset`); errors are JSON `{"detail": "..."}` saying what to fix.
"""

from django.http import HttpRequest, JsonResponse
from ninja import Router, Schema

from dashboards.api import _error, _reader_page
from kpis.restock import restock_page
from ledger.exceptions import UnknownSite

router = Router(tags=["restock"])


class RestockItem(Schema):
    site: str
    sku: str
    available: int
    reorder_point: int | None
    demand_28d: int
    daily_demand: float
    days_of_cover: float | None
    needs_restock: bool
    suggested_qty: int


class RestockAnswer(Schema):
    count: int
    items: list[RestockItem]


class ReadError(Schema):
    detail: str


@router.get(
    "/restock",
    response={200: RestockAnswer, 400: ReadError, 401: ReadError, 404: ReadError},
    summary="What to restock, most urgent first, paged",
    description=(
        "Query: `site` (site code, optional: every site without it), `limit` (default 1000, "
        "at most 10000), `offset` (default 0). Only the (site, SKU) pairs that need "
        "restocking, ordered by `days_of_cover` (pairs without demand last), then site and "
        "SKU. `demand_28d` is units dispatched minus returned in the 28 days ending now "
        "(floored at 0), `daily_demand` = demand_28d / 28, `days_of_cover` = available / "
        "daily_demand (null without demand), `suggested_qty` = ceil(daily_demand * target "
        "days) + reorder_point - available, at least 0 (docs/restocking.md)."
    ),
)
def restock(
    request: HttpRequest,
    site: str | None = None,
    limit: str | None = None,
    offset: str | None = None,
):
    page = _reader_page(request, limit, offset)
    if isinstance(page, JsonResponse):
        return page
    first, page_size = page
    try:
        count, lines = restock_page(site=site or None, first=first, size=page_size)
    except UnknownSite:
        return _error(404, f"no site with code {site!r}")
    return JsonResponse({"count": count, "items": [line.as_json() for line in lines]})
