"""KPI and stock read API (`/api/kpis`, `/api/stock`).

Both answer a logged-in session or a feed token (`Authorization: Bearer <token>` of an active
feed source: read access, checked by ingest's `FeedTokenReadAuth`). Errors are JSON
`{"detail": "..."}` saying what to fix.
"""

import datetime as dt

from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from ninja import Router
from ninja.errors import HttpError

from ingest.auth import FeedTokenReadAuth
from kpis.as_of import as_of_parse, levels_at
from kpis.breakdowns import BREAKDOWNS, UnknownBreakdown
from kpis.reads import kpis_compute
from kpis.windows import WINDOWS, UnknownWindow
from ledger.exceptions import UnknownSite, UnknownSku
from ledger.models import Site, Sku
from ledger.selectors import site_id_of, sku_id_of, stock_page
from slos.reads import slos_status

router = Router(tags=["kpis"])

STOCK_PAGE_DEFAULT = 1000
STOCK_PAGE_MAX = 10000
# PostgreSQL's OFFSET is a 64-bit integer; no one pages this far through real stock levels.
STOCK_OFFSET_MAX = 1_000_000_000_000


_feed_token_check = FeedTokenReadAuth()


def _reader_allowed(request: HttpRequest) -> bool:
    """A logged-in session, or a feed token the feed API itself would accept (a rotated one in
    its grace period too). Any refusal reads as one 401 here: a reader is not told whether a
    token is unknown or its source disabled. A database outage stays a 503."""
    if request.user.is_authenticated:
        return True
    try:
        _feed_token_check(request)
    except HttpError as error:
        if error.status_code >= 500:
            raise
        return False
    return True


def _error(status: int, detail: str) -> JsonResponse:
    return JsonResponse({"detail": detail}, status=status)


def _unauthorized() -> JsonResponse:
    response = _error(
        401, "log in, or send 'Authorization: Bearer <token>' with an active feed source's token"
    )
    response["WWW-Authenticate"] = "Bearer"
    return response


@router.get(
    "/kpis",
    summary="Every KPI for one site or all sites over a window",
    description=(
        "Query: `window` (1h, 24h, 7d or 30d; default 1h), `site` (a site code; omit for all "
        "sites), `by` (optional: `channel` or `courier`). Ratios are fractions, durations "
        "seconds, money in the deployment currency, null when there is nothing to measure "
        "(docs/kpis.md gives each formula). With `by`, the answer adds `breakdown`: a list of "
        "`{key, deliveries, order_accuracy, cost_per_shipment, fulfillment_p50_s, "
        'fulfillment_p90_s}`, one per channel of the order (as given in `order.created`, "" '
        "when none was) or per `courier_id` of the delivery, over the same window and scope, "
        "ordered by deliveries descending then key (docs/breakdowns.md). `as_of` (ISO 8601 "
        "with a UTC offset, not in the future): the answer as it stood at that instant, by "
        "event time, without `feeds` (docs/as_of.md)."
    ),
)
def kpis(
    request: HttpRequest,
    site: str | None = None,
    window: str = "1h",
    by: str | None = None,
    as_of: str | None = None,
):
    if not _reader_allowed(request):
        return _unauthorized()
    if window not in WINDOWS:
        return _error(400, f"window must be one of {', '.join(WINDOWS)}; got {window!r}")
    if by is not None and by not in BREAKDOWNS:
        return _error(400, str(UnknownBreakdown(by)))
    try:
        instant = _as_of(as_of)
    except ValueError as error:
        return _error(400, str(error))
    try:
        answer = kpis_compute(site=site or None, window=window, by=by, as_of=instant)
    except UnknownSite:
        return _error(404, f"no site with code {site!r}")
    except (UnknownWindow, UnknownBreakdown) as error:
        return _error(400, str(error))
    if instant is not None:
        answer["as_of"] = as_of  # as given
        answer.pop("feeds", None)
    return JsonResponse(answer)


def _as_of(raw: str | None) -> dt.datetime | None:
    """The instant of an `as_of` parameter, None when absent (now). ValueError: what to fix."""
    if raw is None or raw == "":
        return None
    return as_of_parse(raw, now=timezone.now())


def _page_bound(raw: str | None, name: str, default: int, maximum: int) -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number; got {raw[:40]!r}") from None
    if not 0 <= value <= maximum:
        raise ValueError(f"{name} must be 0 to {maximum}; got {raw[:40]}")
    return value


def _reader_page(
    request: HttpRequest, limit: str | None, offset: str | None
) -> tuple[int, int] | JsonResponse:
    """(first row, page size) of a paged read (`/api/stock`, `/api/restock`), or the answer
    refusing it: not allowed to read, or a bad `limit` or `offset`."""
    if not _reader_allowed(request):
        return _unauthorized()
    try:
        page_size = _page_bound(limit, "limit", STOCK_PAGE_DEFAULT, STOCK_PAGE_MAX)
        first = _page_bound(offset, "offset", 0, STOCK_OFFSET_MAX)
    except ValueError as error:
        return _error(400, str(error))
    return first, page_size


@router.get(
    "/stock",
    summary="Stock levels, ordered by site and SKU, paged",
    description=(
        "Query: `site` (site code, optional), `sku` (SKU code, optional), `limit` (default "
        "1000, at most 10000), `offset` (default 0, at most 10^12), `as_of` (ISO 8601 with a "
        "UTC offset, not in the future: the levels at that instant, by event time)."
    ),
)
def stock(
    request: HttpRequest,
    site: str | None = None,
    sku: str | None = None,
    limit: str | None = None,
    offset: str | None = None,
    as_of: str | None = None,
):
    page_bounds = _reader_page(request, limit, offset)
    if isinstance(page_bounds, JsonResponse):
        return page_bounds
    first, page_size = page_bounds
    try:
        instant = _as_of(as_of)
    except ValueError as error:
        return _error(400, str(error))
    try:
        if instant is not None:
            return JsonResponse(
                _stock_page_at(instant, site_code=site, sku_code=sku, first=first, size=page_size)
            )
        page = stock_page(site_code=site, sku_code=sku, offset=first, limit=page_size)
    except UnknownSite:
        return _error(404, f"no site with code {site!r}")
    except UnknownSku:
        return _error(404, f"no SKU with code {sku!r}")
    return JsonResponse(
        {
            "count": page.count,
            "items": [
                {
                    "site": site_code,
                    "sku": sku_code,
                    "on_hand": on_hand,
                    "reserved": reserved,
                    "available": on_hand - reserved,
                }
                for site_code, sku_code, on_hand, reserved in page.rows
            ],
        }
    )


@router.get(
    "/slos",
    summary="Service level objectives: SLI, error budget and burn rates over 28 days",
    description=(
        "A list, one entry per SLO (`ingest_availability`, `freshness`, `correctness`): "
        "`target`, `sli` (good / total over 28 days, null with no events), `budget_remaining` "
        "(the fraction of the error budget 1 - target not yet spent; below 0 when overspent), "
        "`burn_rate_1h`, `burn_rate_6h` (how fast the budget burns: 1 spends it in exactly 28 "
        "days; null with no events in the window). docs/slo.md gives each definition."
    ),
)
def slos(request: HttpRequest):
    if not _reader_allowed(request):
        return _unauthorized()
    return JsonResponse([status.as_api() for status in slos_status()], safe=False)


def _stock_page_at(
    at: dt.datetime, *, site_code: str | None, sku_code: str | None, first: int, size: int
) -> dict:
    """A page of the stock levels at `at` (docs/as_of.md), ordered by site and SKU code.
    Raises UnknownSite or UnknownSku for a code that names nothing."""
    levels = levels_at(at=at, site_id=site_id_of(site_code), sku_id=sku_id_of(sku_code))
    site_codes = dict(
        Site.objects.filter(id__in={pair[0] for pair in levels}).values_list("id", "code")
    )
    sku_codes = dict(
        Sku.objects.filter(id__in={pair[1] for pair in levels}).values_list("id", "code")
    )
    ordered = sorted(
        (site_codes[site], sku_codes[sku], level) for (site, sku), level in levels.items()
    )
    return {
        "count": len(ordered),
        "items": [
            {
                "site": site_code,
                "sku": sku_code,
                "on_hand": level.on_hand,
                "reserved": level.reserved,
                "available": level.available,
            }
            for site_code, sku_code, level in ordered[first : first + size]
        ],
    }
