"""Service level objectives: what is counted, and the SLI, budget and burn rates read from it.

The figures are computed by hand in each test from the events it makes.
"""

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from ingest.housekeeping import housekeeping_run
from ingest.models import IngestBatch
from ingest.parsing import events_parse
from ingest.processing import batch_process
from ingest.receiving import batch_receive
from slos.counters import ingest_answers, slo_count
from slos.models import DAY_S, MINUTE_S, Slo, SloCount, SloTarget
from slos.reads import slo_budget_by_day, slos_status
from tests.builders import site_make, sku_make, user_make
from tests.ingest.helpers import batch_apply, event, json_body, received, source_make

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 12, 7, 12, 0, 30, tzinfo=UTC)
API_KEYS = {"slo", "target", "sli", "budget_remaining", "burn_rate_1h", "burn_rate_6h"}


def status_of(slo: Slo, now=NOW):
    return next(status for status in slos_status(now) if status.slo == slo.value)


def counted(slo: Slo) -> tuple[int, int]:
    """(good, total) in the day rows of `slo`: everything ever counted."""
    rows = SloCount.objects.filter(slo=slo.value, span_s=DAY_S)
    return sum(row.good for row in rows), sum(row.total for row in rows)


def test_with_nothing_counted_the_sli_is_null_and_the_whole_budget_remains():
    status = status_of(Slo.FRESHNESS)
    assert status.as_api() == {
        "slo": "freshness",
        "target": 0.99,
        "sli": None,
        "budget_remaining": 1.0,
        "burn_rate_1h": None,
        "burn_rate_6h": None,
    }


def test_sli_budget_and_burn_rates_to_the_hand_computed_figure():
    # given (target 0.99, budget 0.01):
    # 10 days ago 1,000 events, 990 good; 3 hours ago 100 events, 99 good;
    # 30 minutes ago 100 events, 80 good; 29 days ago 500 events, none good (outside 28 days)
    slo_count(Slo.FRESHNESS, good=990, total=1000, at=NOW - timedelta(days=10))
    slo_count(Slo.FRESHNESS, good=99, total=100, at=NOW - timedelta(hours=3))
    slo_count(Slo.FRESHNESS, good=80, total=100, at=NOW - timedelta(minutes=30))
    slo_count(Slo.FRESHNESS, good=0, total=500, at=NOW - timedelta(days=29))

    status = status_of(Slo.FRESHNESS).as_api()

    # 28 days: 1,200 events, 1,169 good, 31 bad
    assert status["sli"] == pytest.approx(1169 / 1200)
    # 31/1200 = 2.58 % bad against a 1 % budget: overspent 2.58 times
    assert status["budget_remaining"] == pytest.approx(1 - (31 / 1200) / 0.01)
    # last hour: 100 events, 20 bad: 20 % / 1 % = 20
    assert status["burn_rate_1h"] == pytest.approx(20.0)
    # last 6 hours: 200 events, 21 bad: 10.5 % / 1 % = 10.5
    assert status["burn_rate_6h"] == pytest.approx(10.5)
    # and the other SLOs are untouched
    assert status_of(Slo.CORRECTNESS).sli is None


def test_windows_count_whole_minutes_the_current_one_included():
    # an hour is the 60 minute buckets starting within it: 11:01 .. 12:00 at 12:00:30
    slo_count(Slo.CORRECTNESS, good=0, total=1, at=datetime(2026, 12, 7, 11, 0, 59, tzinfo=UTC))
    slo_count(Slo.CORRECTNESS, good=0, total=3, at=datetime(2026, 12, 7, 11, 1, 0, tzinfo=UTC))
    slo_count(Slo.CORRECTNESS, good=1, total=1, at=NOW)

    status = status_of(Slo.CORRECTNESS)

    # 1h: 4 events (11:01 and 12:00), 3 bad: 75 % / 2 % = 37.5; 6h: 5 events, 4 bad: 40
    assert status.burn_rates["1h"] == pytest.approx(0.75 / 0.02)
    assert status.burn_rates["6h"] == pytest.approx(0.8 / 0.02)
    assert status.burn_rates["5m"] == pytest.approx(0.0)  # 12:00 only: 1 good


def test_the_28_day_window_joins_minutes_of_its_first_day_to_whole_days():
    # the window at 12:00:30 starts with the minute bucket 12:01 of 28 days ago
    start = NOW - timedelta(days=28)
    slo_count(Slo.FRESHNESS, good=0, total=7, at=start.replace(minute=0))  # 12:00: outside
    slo_count(Slo.FRESHNESS, good=5, total=5, at=start.replace(minute=1))  # 12:01: inside
    slo_count(Slo.FRESHNESS, good=2, total=2, at=start + timedelta(hours=13))  # next day
    slo_count(Slo.FRESHNESS, good=3, total=4, at=NOW)  # today

    status = status_of(Slo.FRESHNESS)

    assert (status.good, status.total) == (10, 11)


def test_a_target_edited_in_the_admin_changes_the_budget(client):
    slo_count(Slo.INGEST_AVAILABILITY, good=995, total=1000, at=NOW)
    assert status_of(Slo.INGEST_AVAILABILITY).budget_remaining == pytest.approx(1 - 5.0)
    client.force_login(user_make(is_superuser=True, is_staff=True))
    target = SloTarget.objects.get(slo=Slo.INGEST_AVAILABILITY)
    url = f"/admin/slos/slotarget/{target.pk}/change/"

    # a target of 1 leaves no budget: the form refuses it and says why
    refused = client.post(url, {"target": "1"})
    assert refused.status_code == 200
    assert "less than or equal to 0.999999" in refused.content.decode()

    # 0.99 gives 1 % of budget, of which 0.5 % is spent
    saved = client.post(url, {"target": "0.99"})
    assert saved.status_code == 302, saved.content
    assert status_of(Slo.INGEST_AVAILABILITY).budget_remaining == pytest.approx(0.5)


def test_the_budget_chart_shows_each_day_of_the_window():
    slo_count(Slo.CORRECTNESS, good=98, total=100, at=NOW - timedelta(days=2))
    slo_count(Slo.CORRECTNESS, good=90, total=100, at=NOW)

    series = slo_budget_by_day(Slo.CORRECTNESS, NOW)

    assert len(series) == 28
    assert series[0][0] == datetime(2026, 11, 10, tzinfo=UTC)
    assert series[-1][0] == datetime(2026, 12, 7, tzinfo=UTC)
    assert series[-3][1] == pytest.approx(0.0)  # 2 % bad against a 2 % budget: all spent
    assert series[-1][1] == pytest.approx(1 - 0.06 / 0.02)  # 12 bad of 200: 3 budgets spent


@pytest.fixture
def catalog():
    site_make("north")
    sku_make("A")
    sku_make("B")


def test_events_applied_within_a_minute_of_receipt_are_fresh_the_others_not(
    catalog, django_capture_on_commit_callbacks
):
    source, _ = source_make()
    with django_capture_on_commit_callbacks(execute=True):
        # a batch applied at once: 2 fresh events
        batch_apply(source, [received("A", 1), received("B", 2)])
        # a batch that waited 2 minutes in the queue: 3 late events
        text = json_body([received("A", 1), received("A", 1), received("B", 1)])
        batch = batch_receive(
            source=source,
            body_format="json",
            raw_body=text,
            accepted=len(events_parse(body_format="json", text=text)),
        )
        IngestBatch.objects.filter(pk=batch.pk).update(
            received_at=timezone.now() - timedelta(minutes=2)
        )
        batch_process(batch_id=batch.pk)

    assert counted(Slo.FRESHNESS) == (2, 5)
    assert status_of(Slo.FRESHNESS, timezone.now()).sli == pytest.approx(0.4)


def test_each_snapshot_line_compared_counts_for_correctness(
    catalog, django_capture_on_commit_callbacks
):
    source, _ = source_make()
    with django_capture_on_commit_callbacks(execute=True):
        batch_apply(source, [received("A", 10), received("B", 4)])
        # A matches, B does not
        batch_apply(
            source,
            [event("stock.snapshot", lines=[{"sku": "A", "qty": 10}, {"sku": "B", "qty": 5}])],
        )

    assert counted(Slo.CORRECTNESS) == (1, 2)


def test_every_ingest_answer_counts_for_availability_and_only_5xx_are_bad(client, catalog):
    _, token = source_make()
    ingest_answers.flush()  # what earlier tests of this process left, into this test's rows
    before = counted(Slo.INGEST_AVAILABILITY)
    headers = {"Authorization": f"Bearer {token}"}

    answers = [
        client.post(
            "/api/ingest/events",
            data=json_body([received("A", 1)]),
            content_type="application/json",
            headers=headers,
        ).status_code,
        client.post(
            "/api/ingest/events", data="{", content_type="application/json", headers=headers
        ).status_code,
        client.post("/api/ingest/events", data="{}", content_type="application/json").status_code,
    ]
    client.get("/api/ingest/source", headers=headers)  # not a POST of events: not counted
    ingest_answers.flush()

    assert answers == [202, 400, 401]
    good, total = counted(Slo.INGEST_AVAILABILITY)
    assert (good - before[0], total - before[1]) == (3, 3)


def test_answers_counted_while_the_database_is_away_are_kept_until_it_is_back():
    counter = type(ingest_answers)(flush_s=0, retry_s=0)
    counter.answer_count(503, at=NOW)
    counter.answer_count(503, at=NOW)
    counter.answer_count(202, at=NOW)
    minute = int(NOW.timestamp()) // MINUTE_S * MINUTE_S

    assert counter.pending() == {("ingest_availability", minute): [1, 3]}
    assert counter.flush() is True
    assert counter.pending() == {}
    assert counted(Slo.INGEST_AVAILABILITY) == (1, 3)


def test_the_slos_api_answers_each_slo_with_the_contract_keys(client):
    slo_count(Slo.CORRECTNESS, good=49, total=50)

    refused = client.get("/api/slos")
    _, token = source_make()
    answer = client.get("/api/slos", headers={"Authorization": f"Bearer {token}"})

    assert refused.status_code == 401
    assert refused.json()["detail"].startswith("log in")
    assert answer.status_code == 200
    body = answer.json()
    assert [entry["slo"] for entry in body] == ["ingest_availability", "freshness", "correctness"]
    assert all(set(entry) == API_KEYS for entry in body)
    correctness = body[2]
    assert correctness["target"] == 0.98
    assert correctness["sli"] == pytest.approx(0.98)
    assert correctness["budget_remaining"] == pytest.approx(0.0, abs=1e-9)
    assert correctness["burn_rate_1h"] == pytest.approx(1.0)


def test_housekeeping_drops_minute_counters_past_35_days_and_keeps_every_day():
    now = timezone.now()
    slo_count(Slo.FRESHNESS, good=1, total=2, at=now - timedelta(days=36))
    slo_count(Slo.FRESHNESS, good=3, total=4, at=now - timedelta(days=34))

    report = housekeeping_run(now=now)

    assert report.slo_minutes_dropped == 1
    assert "SLO minute counters dropped: 1 (older than 35 days" in "\n".join(report.lines())
    assert SloCount.objects.filter(span_s=MINUTE_S).count() == 1
    assert counted(Slo.FRESHNESS) == (4, 6)  # the day counters keep the whole history
