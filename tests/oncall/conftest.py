import django_rq
import pytest

from dashboards.kpis import kpis_compute
from inventory_ops.models import StockLevel


@pytest.fixture
def redis_clean():
    """An empty Redis DB for the test (REDIS_URL names a DB of our own: FLUSHDB, never FLUSHALL)."""
    connection = django_rq.get_connection("default")
    connection.flushdb()
    yield connection
    connection.flushdb()


@pytest.fixture
def kpis_from_stock(monkeypatch):
    """Stand in for the KPI engine (a stub until its issue lands) where alerts read it.

    Computes `negative_stock` from the real stock levels and leaves every other key as the
    contract's `kpis_compute` gives it. Remove once `dashboards.kpis.kpis_compute` is real.
    """

    def compute(*, site=None, window="1h", now=None):
        kpis = kpis_compute(site=site, window=window, now=now)
        levels = StockLevel.objects.filter(on_hand__lt=0)
        if site:
            levels = levels.filter(site__code=site)
        kpis["negative_stock"] = levels.count()
        return kpis

    monkeypatch.setattr("dashboards.oncall.measures.kpis_compute", compute)
