"""KPI and stock read API (`/api/kpis`, `/api/stock`)."""

from ninja import Router

router = Router(tags=["kpis"])
