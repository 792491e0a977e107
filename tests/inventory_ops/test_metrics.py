import re

import pytest

from inventory_ops.models import Site, Sku
from tests.ingest.helpers import batch_apply, event, received, source_make

pytestmark = pytest.mark.django_db


def sample(text: str, name: str, **labels) -> float | None:
    label_text = ",".join(f'{key}="{value}"' for key, value in labels.items())
    pattern = "^" + re.escape(f"{name}{{{label_text}}}" if labels else name) + r" (\S+)$"
    match = re.search(pattern, text, re.MULTILINE)
    return float(match.group(1)) if match else None


def test_metrics_answer_prometheus_text_with_ingest_counters_and_queues(client):
    Site.objects.create(code="north", name="North")
    Sku.objects.create(code="APPLE", name="Apple", unit_cost="1.00")
    source, _ = source_make("wms")
    bad = event("stock.received", sku="APPLE", qty=-3)
    batch_apply(source, [received("APPLE", 5), received("APPLE", 2), bad])

    response = client.get("/metrics")  # no login: scraped by machines

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    text = response.content.decode()
    assert sample(text, "inventory_ops_ingest_events_accepted_total", source="wms") == 3
    assert sample(text, "inventory_ops_ingest_events_applied_total", source="wms") == 2
    assert sample(text, "inventory_ops_ingest_events_rejected_total", source="wms") == 1
    assert sample(text, "inventory_ops_dead_letters_open") == 1
    assert sample(text, "inventory_ops_queue_depth", queue="ingest") is not None
    assert sample(text, "inventory_ops_dependency_up", dependency="redis") == 1
    assert sample(text, "inventory_ops_websocket_clients") == 0
    assert "# TYPE inventory_ops_ingest_events_applied_total counter" in text
