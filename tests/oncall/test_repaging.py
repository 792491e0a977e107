"""Re-paging and escalation of alerts left open and unacknowledged, with a settable clock
(`alerts_repage(now=)`) and through the scheduled evaluation job run by a real RQ worker; every
notification reaches a real local HTTP receiver."""

from datetime import timedelta

import pytest
from django.db.models import F

from core.roles import ON_CALL
from oncall.models import AlertRule, DeliveryReason, NotificationChannel, NotificationDelivery
from oncall.repaging import alerts_repage
from oncall.schedule import alerts_schedule_ensure
from oncall.silences import silence_create
from tests.builders import user_make
from tests.oncall.receiver import Receiver
from tests.oncall.test_notifications import floor, run_jobs, webhook  # noqa: F401 (fixture)
from tests.oncall.test_schedule import run_now, scheduled_ids

pytestmark = pytest.mark.django_db


def repage(floor, at) -> int:  # noqa: F811
    with floor.capture(execute=True):
        return alerts_repage(now=at)


def rule_set(floor, **fields) -> None:  # noqa: F811
    AlertRule.objects.filter(pk=floor.rule.pk).update(**fields)


def paged_once(floor, receiver):  # noqa: F811
    """A webhook to the receiver, an alert firing, and its first page received."""
    webhook(receiver.url)
    alert = floor.breach()
    run_jobs()
    receiver.wait_for(1)
    return alert


def test_an_unacknowledged_alert_is_paged_again_every_interval_of_its_rule(floor):  # noqa: F811
    rule_set(floor, repeat_minutes=10)
    with Receiver() as receiver:
        alert = paged_once(floor, receiver)
        opened = alert.opened_at

        # nothing before ten minutes; at ten, the firing is sent again
        assert repage(floor, opened + timedelta(minutes=9, seconds=59)) == 0
        assert repage(floor, opened + timedelta(minutes=10)) == 1
        run_jobs()
        again = receiver.wait_for(2)[-1]
        # counted from that re-page: not at 15, again at 20
        assert repage(floor, opened + timedelta(minutes=15)) == 0
        assert repage(floor, opened + timedelta(minutes=20)) == 1
        run_jobs()
        receiver.wait_for(3)
    assert (again["event"], again["reason"], again["alert"]["status"]) == (
        "firing",
        "repeat",
        "open",
    )
    assert receiver.bodies()[0]["reason"] == "transition"
    log = alert.deliveries.order_by("pk").values_list("reason", "status")
    assert list(log) == [("transition", "sent"), ("repeat", "sent"), ("repeat", "sent")]


def test_without_an_interval_on_the_rule_the_deployment_default_applies_and_0_is_never(
    floor,  # noqa: F811
    settings,
):
    settings.ALERT_REPEAT_MINUTES = 45
    webhook("http://127.0.0.1:9/unused")
    alert = floor.breach()

    assert repage(floor, alert.opened_at + timedelta(minutes=44)) == 0
    assert repage(floor, alert.opened_at + timedelta(minutes=45)) == 1

    rule_set(floor, repeat_minutes=0)
    assert repage(floor, alert.opened_at + timedelta(days=1)) == 0


@pytest.mark.parametrize("how", ["acknowledged", "silenced", "resolved"])
def test_re_paging_stops_once_the_alert_is_acknowledged_silenced_or_resolved(
    floor,  # noqa: F811
    how,
):
    rule_set(floor, repeat_minutes=10)
    webhook("http://127.0.0.1:9/unused")
    alert = floor.breach()

    if how == "acknowledged":
        floor.acknowledge(alert)
    elif how == "silenced":
        silence_create(
            user=user_make("sam", role=ON_CALL),
            rule_id=floor.rule.pk,
            ends_at=alert.opened_at + timedelta(hours=2),
            reason="recount under way",
        )
    else:
        floor.recover()
    before = NotificationDelivery.objects.count()

    assert repage(floor, alert.opened_at + timedelta(minutes=30)) == 0
    assert NotificationDelivery.objects.count() == before


def test_an_alert_left_unacknowledged_escalates_once_and_that_channel_hears_the_rest(
    floor,  # noqa: F811
):
    with Receiver() as pager, Receiver() as managers:
        webhook(pager.url, name="pager")
        # a channel that wants nothing by itself: it hears only what is escalated to it
        second = NotificationChannel.objects.create(
            name="duty managers",
            kind="webhook",
            url=managers.url,
            on_firing=False,
            on_acknowledged=False,
            on_resolved=False,
        )
        rule_set(floor, repeat_minutes=20, escalate_after_minutes=15, escalation_channel=second)
        alert = floor.breach()
        run_jobs()
        opened = alert.opened_at

        assert repage(floor, opened + timedelta(minutes=14)) == 0
        assert repage(floor, opened + timedelta(minutes=15)) == 1  # escalated
        run_jobs()
        (escalated,) = managers.wait_for(1)
        assert repage(floor, opened + timedelta(minutes=19)) == 0  # once only
        # the next re-page goes to both
        assert repage(floor, opened + timedelta(minutes=20)) == 2
        run_jobs()
        managers.wait_for(2)
        # and so does the acknowledgement, which ends it
        floor.acknowledge(alert)
        run_jobs()
        bodies = managers.wait_for(3)
        assert repage(floor, opened + timedelta(hours=3)) == 0
        assert [body["reason"] for body in pager.wait_for(3)] == [
            "transition",
            "repeat",
            "transition",
        ]
    assert (escalated["event"], escalated["reason"]) == ("firing", "escalation")
    assert [(body["event"], body["reason"]) for body in bodies] == [
        ("firing", "escalation"),
        ("firing", "repeat"),
        ("acknowledged", "transition"),
    ]


def test_the_scheduled_evaluation_job_re_pages_through_a_real_rq_worker(floor):  # noqa: F811
    rule_set(floor, repeat_minutes=30)
    with Receiver() as receiver:
        alert = paged_once(floor, receiver)
        # the clock moved on 31 minutes: the alert and its page are that old
        moved = timedelta(minutes=31)
        type(alert).objects.filter(pk=alert.pk).update(opened_at=F("opened_at") - moved)
        NotificationDelivery.objects.update(created_at=F("created_at") - moved)
        alerts_schedule_ensure()
        [job_id] = scheduled_ids()

        with floor.capture(execute=True):
            run_now(job_id)  # the chain's job, run by a worker as RQ's scheduler would
        run_jobs()

        bodies = receiver.wait_for(2)
    assert [body["reason"] for body in bodies] == ["transition", "repeat"]
    assert alert.deliveries.filter(reason=DeliveryReason.REPEAT).count() == 1


def test_an_escalation_needs_both_a_delay_and_a_channel_in_the_admin(client):
    client.force_login(user_make("dana", role=ON_CALL, is_staff=True))
    form = {
        "name": "Negative stock",
        "kind": "negative_stock",
        "site": "",
        "threshold": "0",
        "hold_seconds": "0",
        "window": "1h",
        "severity": "critical",
        "enabled": "on",
        "repeat_minutes": "15",
        "escalate_after_minutes": "30",
        "escalation_channel": "",
    }

    response = client.post("/admin/oncall/alertrule/add/", form)

    assert response.context["adminform"].form.errors == {
        "escalation_channel": ["Say where to escalate to."]
    }
    assert not AlertRule.objects.exists()
