import re

import pytest

from core.roles import MANAGERS, ON_CALL
from ledger.models import Site, Sku
from tests.builders import user_make
from tests.ingest.helpers import batch_apply, event, received, source_make

pytestmark = pytest.mark.django_db


def sample(text: str, name: str, **labels) -> float | None:
    label_text = ",".join(f'{key}="{value}"' for key, value in labels.items())
    pattern = "^" + re.escape(f"{name}{{{label_text}}}" if labels else name) + r" (\S+)$"
    match = re.search(pattern, text, re.MULTILINE)
    return float(match.group(1)) if match else None


METRICS_TOKEN = "metrics-token-for-tests"


@pytest.fixture
def scraper(client, settings):
    settings.METRICS_TOKEN = METRICS_TOKEN
    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {METRICS_TOKEN}"
    return client


def test_metrics_answer_prometheus_text_with_ingest_counters_and_queues(scraper):
    Site.objects.create(code="north", name="North")
    Sku.objects.create(code="APPLE", name="Apple", unit_cost="1.00")
    source, _ = source_make("wms")
    bad = event("stock.received", sku="APPLE", qty=-3)
    batch_apply(source, [received("APPLE", 5), received("APPLE", 2), bad])

    response = scraper.get("/metrics")  # no login: a machine with the token

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


def test_metrics_refuse_anonymous_callers_and_wrong_tokens(client, settings):
    settings.METRICS_TOKEN = METRICS_TOKEN
    source_make("partner-wms")

    anonymous = client.get("/metrics")
    wrong = client.get("/metrics", headers={"Authorization": "Bearer not-the-token"})

    for response in (anonymous, wrong):
        assert response.status_code == 401
        assert response["WWW-Authenticate"] == 'Bearer realm="metrics"'
        assert "METRICS_TOKEN" in response.content.decode()
        assert "inventory_ops_" not in response.content.decode()


def test_without_a_metrics_token_set_no_bearer_token_opens_metrics(client, settings):
    settings.METRICS_TOKEN = ""

    response = client.get("/metrics", headers={"Authorization": "Bearer "})

    assert response.status_code == 401


def test_metrics_are_for_on_call_users_not_other_roles(client):
    client.force_login(user_make(role=MANAGERS))
    as_manager = client.get("/metrics")
    client.force_login(user_make(role=ON_CALL))
    as_on_call = client.get("/metrics")

    assert as_manager.status_code == 403
    assert "inventory_ops_" not in as_manager.content.decode()
    assert as_on_call.status_code == 200
    assert "# TYPE inventory_ops_queue_depth gauge" in as_on_call.content.decode()
