"""The JSON API: one NinjaAPI, with a router per app. OpenAPI at /api/openapi.json."""

from ninja import NinjaAPI

from dashboards.api import router as dashboards_router
from ingest.api import router as ingest_router

api = NinjaAPI(
    title="inventory_ops API",
    version="1",
    description="Feed ingest, KPIs and stock levels. See SPEC.md for the event schema.",
    urls_namespace="api",
)
api.add_router("/ingest/", ingest_router)
api.add_router("/", dashboards_router)
