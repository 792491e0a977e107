import json
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from core.roles import MANAGERS, ON_CALL
from ledger.models import Site, Sku
from tests.builders import user_make
from tests.ingest.helpers import batch_apply, event, received, source_make

pytestmark = pytest.mark.django_db


def sample(text: str, name: str, **labels) -> float | None:
    # prometheus-client writes the labels in alphabetical order
    label_text = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
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
    # and this process's own requests, by route and status
    assert sample(
        text, "inventory_ops_http_requests_total", route="metrics", method="GET", status="200"
    ) in (None, 1.0)  # this very scrape is counted after its text is written


def test_metrics_count_answered_requests_by_route_and_status(scraper):
    def requests_counted(text: str, status: str) -> float:
        labels = {"route": "api/stock", "method": "GET", "status": status}
        return sample(text, "inventory_ops_http_requests_total", **labels) or 0

    before = scraper.get("/metrics").content.decode()
    scraper.get("/api/stock")  # the scraper's metrics token is no feed token: 401
    scraper.get("/api/stock")
    after = scraper.get("/metrics").content.decode()

    assert requests_counted(after, "401") - requests_counted(before, "401") == 2
    assert (
        sample(
            after,
            "inventory_ops_http_request_duration_seconds_count",
            route="api/stock",
            method="GET",
        )
        >= 2
    )


def test_open_alerts_are_counted_per_rule(scraper):
    from django.utils import timezone

    from oncall.models import Alert, AlertKind, AlertRule

    def alert(rule_name: str, status: str) -> None:
        rule, _ = AlertRule.objects.get_or_create(
            name=rule_name, kind=AlertKind.NEGATIVE_STOCK, threshold=0
        )
        Alert.objects.create(
            rule=rule,
            title=rule_name,
            kind=rule.kind,
            threshold=0,
            value=1,
            status=status,
            opened_at=timezone.now(),
        )

    alert("Stockout north", "open")
    alert("Stockout south", "acknowledged")
    alert("Stockout south", "resolved")
    alert("Stockout east", "resolved")

    text = scraper.get("/metrics").content.decode()

    assert sample(text, "inventory_ops_alerts_open", rule="Stockout north") == 1
    assert sample(text, "inventory_ops_alerts_open", rule="Stockout south") == 1
    assert sample(text, "inventory_ops_alerts_open", rule="Stockout east") is None


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


def batches_store_old(source, count: int) -> None:
    """`count` applied batches of `source` received and finished 30 days ago, in one statement
    (the history a long-running deployment holds; the real ingest path would take minutes)."""
    columns = (
        "id, source_id, body_format, raw_body, status, accepted, applied, duplicates, "
        "rejected, held, received_at, job_id, enqueued_at, attempts, started_at, finished_at"
    )
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                f"INSERT INTO ingest_ingestbatch ({columns}) "
                "SELECT gen_random_uuid(), %s, 'json', '', 'done', 10, 9, 1, 0, 0, "
                "now() - interval '30 days', '', NULL, 1, NULL, now() - interval '30 days' "
                "FROM generate_series(1, %s)",
                [source.pk, count],
            )
            # as autovacuum would after such a load: the planner knows the table's size
            cursor.execute("ANALYZE")
        else:
            cursor.execute(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %s) "
                f"INSERT INTO ingest_ingestbatch ({columns}) "
                "SELECT lower(hex(randomblob(16))), %s, 'json', '', 'done', 10, 9, 1, 0, 0, "
                "datetime('now', '-30 days'), '', NULL, 1, NULL, datetime('now', '-30 days') "
                "FROM n",
                [count, source.pk],
            )


def scrape_queries(scraper) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        response = scraper.get("/metrics")
    assert response.status_code == 200
    return [query["sql"] for query in captured.captured_queries]


def rows_read(statements: list[str]) -> int:
    """Rows PostgreSQL's plans read to answer `statements` (EXPLAIN ANALYZE: every scan's rows,
    those its filter dropped included, times its loops)."""

    def scanned(node: dict) -> int:
        rows = 0
        if "Scan" in node["Node Type"]:
            kept = node["Actual Rows"] + node.get("Rows Removed by Filter", 0)
            rows = kept * node["Actual Loops"]
        return rows + sum(scanned(child) for child in node.get("Plans", []))

    total = 0
    with connection.cursor() as cursor:
        for statement in statements:
            if not statement.lstrip().upper().startswith("SELECT"):
                continue
            cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}")
            plan = cursor.fetchone()[0]
            plan = json.loads(plan) if isinstance(plan, str) else plan
            total += scanned(plan[0]["Plan"])
    return total


@pytest.mark.slow
def test_a_scrape_with_100000_stored_batches_runs_the_queries_it_runs_with_10(scraper):
    # given a source with 10 batches through the real path
    Site.objects.create(code="north", name="North")
    Sku.objects.create(code="APPLE", name="Apple", unit_cost="1.00")
    source, _ = source_make("wms")
    for n in range(10):
        batch_apply(source, [received("APPLE", 1, event_id=f"recent-{n}")])
    with_10 = scrape_queries(scraper)

    # when 99,990 more, a month old, are stored
    batches_store_old(source, 99_990)
    text = scraper.get("/metrics").content.decode()
    with_100000 = scrape_queries(scraper)

    # then the scrape asks the same number of questions, and counts them all
    assert len(with_100000) == len(with_10), "\n".join(with_100000)
    assert sample(text, "inventory_ops_ingest_events_accepted_total", source="wms") == 999_910
    assert sample(text, "inventory_ops_ingest_events_duplicates_total", source="wms") == 99_990


@pytest.mark.slow
def test_a_scrape_reads_no_more_rows_with_100000_stored_batches_than_with_10(
    scraper, postgres_only
):
    Site.objects.create(code="north", name="North")
    Sku.objects.create(code="APPLE", name="Apple", unit_cost="1.00")
    source, _ = source_make("wms")
    for n in range(10):
        batch_apply(source, [received("APPLE", 1, event_id=f"recent-{n}")])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")  # both sides planned on statistics, as autovacuum keeps them
    read_with_10 = rows_read(scrape_queries(scraper))

    batches_store_old(source, 99_990)
    read_with_100000 = rows_read(scrape_queries(scraper))

    # the queries only read what is recent, open or queued, never the history's 99,990 rows
    # (two plans of one query may differ by a boundary row or two, not by thousands)
    assert read_with_100000 <= read_with_10 + 10, (read_with_10, read_with_100000)
