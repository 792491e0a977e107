"""Every KPI of SPEC.md for a scope and window.

CONTRACT (stub until the KPI issue lands): `kpis_compute` returns exactly the JSON object of
`GET /api/kpis` (keys, units and nulls as SPEC.md says); the dashboards and alerts read only this.
"""

from datetime import datetime

from django.utils import timezone

WINDOWS = {"1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}


def kpis_compute(
    *, site: str | None = None, window: str = "1h", now: datetime | None = None
) -> dict:
    now = now or timezone.now()
    return {
        "as_of": now.isoformat(),
        "site": site,
        "window": window,
        "inventory_turnover": None,
        "order_accuracy": None,
        "deliveries": 0,
        "stock_mismatch_rate": None,
        "counts": 0,
        "mismatch_units": 0,
        "mismatch_value": 0,
        "cost_per_shipment": None,
        "fulfillment_p50_s": None,
        "fulfillment_p90_s": None,
        "stockouts": 0,
        "negative_stock": 0,
        "below_reorder_point": 0,
        "reconciliation_skew": None,
        "feeds": [],
    }


def kpi_trends_compute(
    *, site: str | None = None, window: str = "1h", now: datetime | None = None
) -> dict:
    """Time series for the dashboard charts, from the rollups (bounded cost).

    Keys: "orders_per_minute", "turnover", "accuracy", "cost_per_shipment": lists of
    {"t": ISO time, "value": number|None} over the window; "mismatch_by_site": list of
    {"site", "rate", "units", "value"}; "worst_stockouts": list of
    {"site", "sku", "available", "reorder_point"} (most negative available first, at most 10).
    """
    return {
        "orders_per_minute": [],
        "turnover": [],
        "accuracy": [],
        "cost_per_shipment": [],
        "mismatch_by_site": [],
        "worst_stockouts": [],
    }
