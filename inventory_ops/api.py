"""The JSON API: one NinjaAPI, with a router per app. OpenAPI at /api/openapi.json."""

from ninja import NinjaAPI

from core.outages import OUTAGE_ERRORS, outage_json_response, outage_log
from dashboards.api import router as dashboards_router
from dashboards.restock_api import router as restock_router
from ingest.api import router as ingest_router

api = NinjaAPI(
    title="inventory_ops API",
    version="1",
    description=(
        "Feed ingest, KPIs, stock levels and restocking. The event schema, signing and every KPI's "
        "formula are written out in the repository's docs/ingest.md and docs/kpis.md."
    ),
    urls_namespace="api",
)
api.add_router("/ingest/", ingest_router)
api.add_router("/", dashboards_router)
api.add_router("/", restock_router)


def _outage(request, exc):
    outage_log(request.path_info, exc)
    return outage_json_response()


# The database or Redis away: 503 in JSON from every endpoint (not ninja's 500 traceback).
for _error in OUTAGE_ERRORS:
    api.add_exception_handler(_error, _outage)
