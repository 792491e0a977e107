"""The web process (the Procfile line) while PostgreSQL or Redis is away: pages answer a plain 503
page, the JSON API a JSON 503, dashboard sockets close with 4503; all recover within 5 s of the
dependency's return."""

import time

import pytest

from core.outages import CLOSE_UNAVAILABLE
from tests.faults.dashboard_client import LiveDashboard
from tests.faults.stack import Stack

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

PAGES = ("/", "/sites/north/", "/skus/A/?site=north", "/oncall/", "/admin/")
API = ("/api/stock", "/api/kpis", "/api/ingest/source")


@pytest.fixture(scope="module")
def stack():
    # Dashboards recompute every second here, so an outage shows on an open one at once.
    stack = Stack(name="web-outages", DASHBOARD_REFRESH_S="1")
    try:
        stack.web_start()
        stack.cookie = {"Cookie": f"sessionid={stack.session_make('pager', role='on-call')}"}
        yield stack
    finally:
        stack.close()


@pytest.fixture
def dashboard(stack):
    live = LiveDashboard(stack.base_url, stack.cookie["Cookie"].split("=", 1)[1])
    stack.wait_for(lambda: live.views_since(0), "the dashboard to go live")
    yield live
    live.close()


def recovery_seconds(stack: Stack, dashboard: LiveDashboard, back_at: float) -> float:
    """Seconds from `back_at` until every page and API answers 200 and the dashboard is live."""
    stack.wait_for(
        lambda: all(stack.get(p, headers=stack.cookie).status == 200 for p in PAGES + API),
        "pages and API to answer again",
        timeout=30,
    )
    stack.wait_for(lambda: dashboard.views_since(back_at), "the dashboard to be live", 30)
    return time.monotonic() - back_at


def ingest_answers_counted(stack: Stack) -> tuple[int, int]:
    """(good, total) ingest answers the availability SLO has counted so far."""
    rows = stack.sql(
        "SELECT COALESCE(SUM(good), 0), COALESCE(SUM(total), 0) FROM slos_slocount "
        "WHERE slo = 'ingest_availability' AND span_s = 86400"
    )
    return int(rows[0][0]), int(rows[0][1])


def test_a_database_outage_is_a_503_everywhere_and_over_within_5s_of_its_end(stack, dashboard):
    counted_before = ingest_answers_counted(stack)
    # when PostgreSQL stops at once
    stack.pg.stop("immediate")
    down_at = time.monotonic()
    try:
        # then every page answers the plain 503 page, in seconds, not a 500
        for path in PAGES:
            answer = stack.get(path, headers=stack.cookie)
            assert answer.status == 503, (path, answer)
            assert b"Server unavailable, retrying" in answer.body
            assert answer.seconds < 10
        # and the JSON API a JSON 503 saying to retry
        for path in API:
            answer = stack.get(path)
            assert answer.status == 503, (path, answer)
            assert "retry" in answer.json()["detail"]
        assert stack.get("/readyz").json() == {"status": "not ready"}
        assert stack.get("/healthz").status == 200
        # and a feed's POSTs are refused with a 503 (3 of them)
        refused = [stack.post_events([]).status for _ in range(3)]
        assert refused == [503, 503, 503]
        # and the open dashboard is told the server is unavailable
        stack.wait_for(lambda: dashboard.closed_unavailable_since(down_at), "a 4503 close", 20)
    finally:
        stack.pg.start()
    back_at = time.monotonic()
    # and everything recovers within 5 s of PostgreSQL's return
    assert recovery_seconds(stack, dashboard, back_at) < 5

    # and the ingest availability SLO counted the 3 refused POSTs as bad, once the database was
    # back to write them (the web process kept them meanwhile)
    def outage_answers_written() -> bool:
        stack.get("/healthz")  # any request lets the web process write what it kept
        return ingest_answers_counted(stack)[1] >= counted_before[1] + 3

    stack.wait_for(outage_answers_written, "the outage's answers to be counted", timeout=20)
    good, total = ingest_answers_counted(stack)
    assert (good - counted_before[0], total - counted_before[1]) == (0, 3)
    slos = {entry["slo"]: entry for entry in stack.get("/api/slos", headers=stack.cookie).json()}
    assert slos["ingest_availability"]["sli"] == pytest.approx(good / total)


def test_a_redis_outage_closes_dashboards_as_unavailable_and_keeps_pages_and_ingest_up(
    stack, dashboard
):
    # when Redis dies
    stack.redis.kill()
    down_at = time.monotonic()
    try:
        # then the open dashboard is told at once that the server is unavailable
        stack.wait_for(lambda: dashboard.closed_unavailable_since(down_at), "a 4503 close", 10)
        # and pages still answer, batches are still stored, readiness says not ready
        assert stack.get("/", headers=stack.cookie).status == 200
        event = {
            "event_id": "redis-down-1",
            "type": "stock.received",
            "occurred_at": "2026-12-01T00:00:00+00:00",
            "site": "north",
            "sku": "A",
            "qty": 1,
        }
        assert stack.post_events([event]).status == 202
        assert stack.get("/readyz").status == 503
    finally:
        stack.redis.start()
    back_at = time.monotonic()
    # and within 5 s of Redis's return the dashboard is live again
    assert recovery_seconds(stack, dashboard, back_at) < 5
    assert CLOSE_UNAVAILABLE in {code for _, code in dashboard.closes}
