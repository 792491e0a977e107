from datetime import timedelta
from decimal import Decimal

import django_rq
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from core.notify import alerts_changed, notify_now
from core.roles import MANAGERS, ON_CALL, STOCK_STAFF
from corrections.services import CorrectionDraft, corrections_request
from kpis.reads import kpis_compute
from ledger.models import MovementKind
from ledger.services import MovementRequest, movements_record
from oncall.alerts import alerts_evaluation_request, pending_sites_take
from oncall.exceptions import AlertTransitionRefused, OncallNotAllowed, StillBreaching
from oncall.jobs import alerts_evaluation_job
from oncall.models import (
    Alert,
    AlertKind,
    AlertRule,
    AlertRuleState,
    AlertStatus,
    Runbook,
)
from oncall.selectors import open_alerts
from oncall.services import alert_transition, alerts_evaluate, runbook_save
from tests.builders import receive, site_make, sku_make, user_make
from tests.redis_db import redis_test_db_flush

pytestmark = pytest.mark.django_db


def dispatch(site, sku, qty):
    return MovementRequest(
        site=site.code,
        sku=sku.code,
        kind=MovementKind.ORDER_DISPATCHED,
        on_hand_delta=-qty,
        occurred_at=timezone.now(),
    )


def negative_stock_rule(site=None, hold_seconds=0):
    return AlertRule.objects.create(
        name="Negative stock",
        kind=AlertKind.NEGATIVE_STOCK,
        site=site,
        threshold=Decimal("0"),
        hold_seconds=hold_seconds,
    )


def test_an_alert_opens_when_the_kpi_crosses_and_resolves_when_it_recovers():
    site, sku = site_make(), sku_make()
    rule = negative_stock_rule(site)
    movements_record(requests=[receive(site, sku, 2), dispatch(site, sku, 5)])

    opened = alerts_evaluate(site_codes=[site.code])

    alert = Alert.objects.get()
    assert [change.to_status for change in opened] == ["open"]
    assert (alert.rule, alert.status, alert.value, alert.site) == (rule, "open", 1, site)
    assert [(t.from_status, t.to_status, t.by) for t in alert.transitions.all()] == [
        ("", "open", None)
    ]

    corrections_request(
        drafts=[CorrectionDraft(site=site.code, sku=sku.code, reason="recount", counted_qty=0)],
        requested_by=user_make(role=STOCK_STAFF),
    )
    resolved = alerts_evaluate(site_codes=[site.code])

    alert.refresh_from_db()
    assert [change.to_status for change in resolved] == ["resolved"]
    assert alert.status == AlertStatus.RESOLVED
    last = alert.transitions.last()
    assert (last.from_status, last.to_status, last.by) == ("open", "resolved", None)
    assert last.note.startswith("recovered: value 0")


def test_one_open_alert_per_rule_however_often_it_is_evaluated():
    site, sku = site_make(), sku_make()
    negative_stock_rule(site)
    movements_record(requests=[dispatch(site, sku, 1)])

    for _ in range(3):
        alerts_evaluate(site_codes=[site.code])
    movements_record(requests=[dispatch(site, sku_make(), 1)])
    alerts_evaluate(site_codes=None)

    alert = Alert.objects.get()
    assert alert.last_value == 2


def test_an_alert_opens_only_after_the_breach_held_for_the_hold_time():
    site, sku = site_make(), sku_make()
    negative_stock_rule(site, hold_seconds=300)
    movements_record(requests=[dispatch(site, sku, 1)])
    start = timezone.now()

    alerts_evaluate(site_codes=[site.code], now=start)
    alerts_evaluate(site_codes=[site.code], now=start + timedelta(seconds=299))
    assert not Alert.objects.exists()

    alerts_evaluate(site_codes=[site.code], now=start + timedelta(seconds=300))
    assert Alert.objects.get().status == AlertStatus.OPEN


def test_a_breach_that_recovers_before_the_hold_time_opens_nothing():
    site, sku = site_make(), sku_make()
    negative_stock_rule(site, hold_seconds=60)
    movements_record(requests=[dispatch(site, sku, 1)])
    start = timezone.now()
    alerts_evaluate(site_codes=[site.code], now=start)
    movements_record(requests=[receive(site, sku, 1)])
    alerts_evaluate(site_codes=[site.code], now=start + timedelta(seconds=30))
    movements_record(requests=[dispatch(site, sku, 1)])

    alerts_evaluate(site_codes=[site.code], now=start + timedelta(seconds=61))

    assert not Alert.objects.exists()  # the clock restarted at the second breach


def test_rules_of_other_sites_are_not_evaluated_but_all_sites_rules_are():
    north, south, sku = site_make(), site_make(), sku_make()
    negative_stock_rule(south)
    everywhere = negative_stock_rule(None)
    movements_record(requests=[dispatch(south, sku, 1)])

    alerts_evaluate(site_codes=[north.code])

    assert [alert.rule for alert in Alert.objects.all()] == [everywhere]


def test_disabled_rules_and_missing_data_open_nothing():
    site = site_make()
    AlertRule.objects.create(
        name="off", kind=AlertKind.NEGATIVE_STOCK, threshold=-1, site=site, enabled=False
    )
    AlertRule.objects.create(name="no data yet", kind=AlertKind.ORDER_ACCURACY, threshold=1)

    alerts_evaluate(site_codes=None)

    assert not Alert.objects.exists()


def test_on_call_acknowledges_then_resolves_with_notes_kept():
    site, sku = site_make(), sku_make()
    negative_stock_rule(site)
    movements_record(requests=[dispatch(site, sku, 1)])
    alerts_evaluate(site_codes=None)
    alert = Alert.objects.get()
    engineer = user_make(role=ON_CALL)

    alert_transition(alert_id=alert.pk, to_status="acknowledged", user=engineer, note="looking")
    movements_record(requests=[receive(site, sku, 1)])  # fixed, before the evaluator saw it
    alert_transition(alert_id=alert.pk, to_status="resolved", user=engineer, note="WMS resent")

    moves = [(t.from_status, t.to_status, t.by, t.note) for t in alert.transitions.all()]
    assert moves[1:] == [
        ("open", "acknowledged", engineer, "looking"),
        ("acknowledged", "resolved", engineer, "WMS resent"),
    ]
    with pytest.raises(AlertTransitionRefused, match="resolved"):
        alert_transition(alert_id=alert.pk, to_status="acknowledged", user=engineer)


@pytest.mark.parametrize("role", [MANAGERS, STOCK_STAFF, None])
def test_only_on_call_moves_alerts(role):
    site = site_make()
    negative_stock_rule(site)
    movements_record(requests=[dispatch(site, sku_make(), 1)])
    alerts_evaluate(site_codes=None)

    with pytest.raises(OncallNotAllowed):
        alert_transition(
            alert_id=Alert.objects.get().pk, to_status="resolved", user=user_make(role=role)
        )

    assert Alert.objects.get().status == AlertStatus.OPEN


def test_resolving_by_hand_while_the_rule_still_breaches_is_refused_and_nothing_changes():
    site, sku = site_make(), sku_make()
    negative_stock_rule(site)
    movements_record(requests=[dispatch(site, sku, 1)])
    alerts_evaluate(site_codes=None)
    alert = Alert.objects.get()
    movements_record(requests=[dispatch(site, sku_make(), 1)])  # worse since the evaluation

    with pytest.raises(StillBreaching) as refused:
        alert_transition(alert_id=alert.pk, to_status="resolved", user=user_make(role=ON_CALL))

    # measured now, not at the last evaluation: two pairs negative, not one
    assert str(refused.value) == (
        "not resolved: the condition still holds (value 2 (breaches above 0)), so the alert "
        "would open again at the next evaluation. It resolves by itself once the value "
        "recovers; to stop the notifications meanwhile, silence this rule"
    )
    alert.refresh_from_db()
    assert (alert.status, alert.last_value, alert.transitions.count()) == ("open", 2, 1)


def test_a_resolve_by_hand_once_the_cause_is_fixed_stands_and_a_new_breach_must_hold_again():
    site, sku = site_make(), sku_make()
    negative_stock_rule(site, hold_seconds=300)
    movements_record(requests=[dispatch(site, sku, 1)])
    start = timezone.now()
    alerts_evaluate(site_codes=None, now=start - timedelta(seconds=400))
    alerts_evaluate(site_codes=None, now=start)
    first = Alert.objects.get()
    movements_record(requests=[receive(site, sku, 1)])

    alert_transition(alert_id=first.pk, to_status="resolved", user=user_make(role=ON_CALL))
    movements_record(requests=[dispatch(site, sku, 1)])  # breaks again right after
    alerts_evaluate(site_codes=None, now=start + timedelta(seconds=10))

    # the new breach holds from now: no alert until its hold time has passed
    assert list(Alert.objects.values_list("status", flat=True)) == ["resolved"]
    alerts_evaluate(site_codes=None, now=start + timedelta(seconds=310))
    assert Alert.objects.filter(status=AlertStatus.OPEN).exclude(pk=first.pk).count() == 1


def test_an_alert_whose_rule_was_disabled_can_be_resolved_by_hand_while_breaching():
    site = site_make()
    rule = negative_stock_rule(site)
    movements_record(requests=[dispatch(site, sku_make(), 1)])
    alerts_evaluate(site_codes=None)
    AlertRule.objects.filter(pk=rule.pk).update(enabled=False)  # nothing will reopen it

    alert_transition(
        alert_id=Alert.objects.get().pk, to_status="resolved", user=user_make(role=ON_CALL)
    )

    assert Alert.objects.get().status == AlertStatus.RESOLVED


def test_opened_and_resolved_alerts_are_announced_to_the_dashboards_after_commit(
    django_capture_on_commit_callbacks,
):
    site, sku = site_make(), sku_make()
    negative_stock_rule(site)
    negative_stock_rule(None)
    movements_record(requests=[dispatch(site, sku, 1)])

    with django_capture_on_commit_callbacks() as callbacks:
        alerts_evaluate(site_codes=[site.code])

    announced = sorted((callback.keywords["site_codes"] or ["<all>"]) for callback in callbacks)
    assert all(
        (callback.func, callback.args) == (notify_now, (alerts_changed,)) for callback in callbacks
    )
    assert announced == [["<all>"], [site.code]]


def test_open_alerts_carries_the_runbook_covering_its_kind():
    north, south = site_make(), site_make()
    negative_stock_rule(north)
    negative_stock_rule(south)
    negative_stock_rule(None)
    movements_record(requests=[dispatch(north, sku_make(), 1), dispatch(south, sku_make(), 1)])
    alerts_evaluate(site_codes=None)
    runbook_save(
        runbook=Runbook(
            slug="negative-stock",
            title="Negative stock",
            owner="ops",
            last_reviewed=timezone.now().date(),
            alert_kinds=["negative_stock"],
            body="x",
        ),
        edited_by=None,
    )

    everything = open_alerts()
    for_north = open_alerts(site_code=north.code)

    assert len(everything) == 3
    assert sorted(str(alert["site"]) for alert in for_north) == sorted([north.code, "None"])
    assert {alert["runbook_url"] for alert in everything} == {"/oncall/runbooks/negative-stock/"}
    assert everything[0]["url"] == f"/oncall/alerts/{everything[0]['id']}/"


def test_evaluation_requests_are_coalesced_into_one_job_until_it_starts(redis_clean):
    queue = django_rq.get_queue("default")

    alerts_evaluation_request(site_codes=["ams"])
    alerts_evaluation_request(site_codes=["rtm", "ams"])

    assert queue.count == 1
    assert pending_sites_take() == ["ams", "rtm"]
    alerts_evaluation_request(site_codes=["utr"])  # after the job took the sites: a new job
    assert queue.count == 2
    assert pending_sites_take() == ["utr"]


def test_the_evaluation_job_evaluates_the_requested_sites(redis_clean):
    site = site_make()
    negative_stock_rule(site)
    movements_record(requests=[dispatch(site, sku_make(), 1)])
    alerts_evaluation_request(site_codes=[site.code])

    assert alerts_evaluation_job() == 1
    assert Alert.objects.get().site == site


def test_a_request_never_fails_the_writer_when_redis_is_down(settings, caplog):
    # given the queue's Redis refusing connections
    test_redis = redis_test_db_flush()
    settings.RQ_QUEUES = {
        **settings.RQ_QUEUES,
        "default": {"URL": "redis://127.0.0.1:1/0", "DEFAULT_TIMEOUT": 10},
    }

    # when a writer that has committed asks for an evaluation
    with caplog.at_level("WARNING", logger="oncall.alerts"):
        result = alerts_evaluation_request(site_codes=["ams"])

    # then it returns (raises nothing), says so in the log, and asked nothing of the real Redis
    assert result is None
    assert "alert evaluation not requested, Redis unreachable" in caplog.text
    assert test_redis.dbsize() == 0


def test_the_dashboards_show_open_alerts_with_their_runbook_and_escape_names(
    client,
):
    north, south = site_make("north"), site_make("south")
    rule = negative_stock_rule(north)
    rule.name = "<script>alert('rule')</script>"
    rule.save()
    movements_record(requests=[dispatch(north, sku_make(), 1)])
    alerts_evaluate(site_codes=None)
    runbook_save(
        runbook=Runbook(
            slug="negative-stock",
            title="Negative stock",
            owner="ops",
            last_reviewed=timezone.now().date(),
            alert_kinds=["negative_stock"],
            body="x",
        ),
        edited_by=None,
    )
    client.force_login(user_make(role=MANAGERS))

    everywhere = client.get("/")
    at_north = client.get(f"/sites/{north.code}/")
    at_south = client.get(f"/sites/{south.code}/")

    for page in (everywhere, at_north):
        assert 'data-open-alerts="1"' in page.text
        assert 'href="/oncall/runbooks/negative-stock/"' in page.text
        assert "<script>alert('rule')" not in page.text
        assert "&lt;script&gt;alert(" in page.text
    assert 'data-open-alerts="0"' in at_south.text


def test_quiet_rules_cost_a_bounded_number_of_queries_however_many(
    django_assert_max_num_queries,
):
    site = site_make()
    for n in range(30):
        AlertRule.objects.create(
            name=f"rule {n}", kind=AlertKind.NEGATIVE_STOCK, site=site, threshold=Decimal(5)
        )
    movements_record(requests=[dispatch(site, sku_make(), 1)])  # 1 negative: below 5
    alerts_evaluate(site_codes=None)  # first run creates each rule's state

    with CaptureQueriesContext(connection) as one_kpi_computation:
        kpis_compute(site=site.code, window="1h")

    with django_assert_max_num_queries(len(one_kpi_computation) + 5):
        alerts_evaluate(site_codes=None)

    assert not Alert.objects.exists()
    assert set(AlertRuleState.objects.values_list("last_value", flat=True)) == {1}
