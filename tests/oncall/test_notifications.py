"""Notifications of alert transitions to a real local HTTP receiver and Django's locmem mail,
sent by RQ jobs run by a real (in-process, burst) RQ worker on Redis."""

import json
import re
import time
from decimal import Decimal
from pathlib import Path

import django_rq
import pytest
from django.core import mail
from rq.registry import FailedJobRegistry, ScheduledJobRegistry

from core.roles import MANAGERS, ON_CALL
from ledger.services import movements_record
from oncall.deliveries import notifications_stalled_requeue
from oncall.models import (
    Alert,
    AlertKind,
    AlertRule,
    AlertStatus,
    DeliveryStatus,
    NotificationChannel,
    NotificationDelivery,
    PayloadFormat,
    Severity,
)
from oncall.services import alert_transition, alerts_evaluate
from tests.builders import receive, site_make, sku_make, user_make
from tests.oncall.receiver import Receiver
from tests.oncall.test_alerts import dispatch

pytestmark = pytest.mark.django_db

DOCS = Path(__file__).resolve().parents[2] / "docs" / "oncall.md"


def webhook(url, name="ops-hook", **fields):
    return NotificationChannel.objects.create(name=name, kind="webhook", url=url, **fields)


def run_jobs(*, with_scheduler=False):
    worker = django_rq.get_worker("default", worker_class="rq.worker.SimpleWorker")
    worker.work(burst=True, with_scheduler=with_scheduler)


class Floor:
    """A site whose stock goes negative (an alert fires) and is then received (it resolves)."""

    def __init__(self, capture, severity=Severity.CRITICAL):
        self.capture = capture
        self.site, self.sku = site_make("ams"), sku_make("TEA")
        self.rule = AlertRule.objects.create(
            name="Negative stock at Amsterdam",
            kind=AlertKind.NEGATIVE_STOCK,
            site=self.site,
            threshold=Decimal("0"),
            severity=severity,
        )

    def breach(self) -> Alert:
        movements_record(requests=[dispatch(self.site, self.sku, 3)])
        with self.capture(execute=True):
            alerts_evaluate(site_codes=None)
        return Alert.objects.get(status=AlertStatus.OPEN)

    def recover(self) -> None:
        movements_record(requests=[receive(self.site, self.sku, 3)])
        with self.capture(execute=True):
            alerts_evaluate(site_codes=None)

    def acknowledge(self, alert, note="restocking from the back room") -> None:
        engineer = user_make("dana", role=ON_CALL)
        with self.capture(execute=True):
            alert_transition(
                alert_id=alert.pk, to_status=AlertStatus.ACKNOWLEDGED, user=engineer, note=note
            )


@pytest.fixture
def floor(django_capture_on_commit_callbacks, redis_clean, settings):
    settings.PUBLIC_URL = "https://ops.example.com"
    return Floor(django_capture_on_commit_callbacks)


def documented_example() -> dict:
    """The generic payload's example in docs/oncall.md."""
    section = DOCS.read_text().split("### The JSON webhook payload", 1)[1]
    return json.loads(re.search(r"```json\n(.*?)```", section, re.DOTALL).group(1))


def shape(value):
    """The keys of a JSON document, recursively (values replaced by their type)."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    return type(value).__name__ if value is not None else "null"


def test_a_firing_alert_posts_the_documented_payload_to_a_webhook(floor):
    with Receiver() as receiver:
        channel = webhook(receiver.url)

        # when stock goes negative and the evaluator opens an alert
        alert = floor.breach()
        # then nothing is sent before the job runs (not in the evaluation)
        assert receiver.received == []
        run_jobs()

        # then the receiver got one JSON POST with the documented payload
        (body,) = receiver.wait_for(1)
        assert receiver.received[0].headers["Content-Type"] == "application/json"
    assert body["event"] == "firing"
    assert body["alert"] == {
        **body["alert"],
        "id": alert.pk,
        "url": f"https://ops.example.com/oncall/alerts/{alert.pk}/",
        "title": "Negative stock at Amsterdam",
        "kind": "negative_stock",
        "severity": "critical",
        "status": "open",
        "site": "ams",
        "value": "1.0000",
        "value_display": "1",
        "threshold_display": "0",
        "resolved_at": None,
    }
    assert body["transition"]["to"] == "open"
    assert body["transition"]["by"] is None
    # it names what it is about: the (site, SKU) below zero
    (concern,) = body["alert"]["concerns"]
    assert concern.startswith("ams / TEA ") and concern.endswith("on hand -3, available -3")
    documented = documented_example()
    assert shape(body).keys() == shape(documented).keys()
    assert shape(body["alert"]).keys() == shape(documented["alert"]).keys()
    assert shape(body["transition"]).keys() == shape(documented["transition"]).keys()

    # and the delivery is logged as sent with the receiver's answer
    delivery = NotificationDelivery.objects.get()
    assert (delivery.channel, delivery.alert, delivery.event) == (channel, alert, "firing")
    assert (delivery.status, delivery.attempts, delivery.response_status) == ("sent", 1, 200)
    assert delivery.delivered_at is not None


def test_acknowledgement_and_resolution_follow_the_firing(floor):
    with Receiver() as receiver:
        webhook(receiver.url)
        alert = floor.breach()
        run_jobs()

        floor.acknowledge(alert, note="restocking from the back room")
        run_jobs()
        floor.recover()
        run_jobs()

        bodies = receiver.wait_for(3)
    assert [body["event"] for body in bodies] == ["firing", "acknowledged", "resolved"]
    acknowledged, resolved = bodies[1], bodies[2]
    assert acknowledged["transition"] == {
        **acknowledged["transition"],
        "from": "open",
        "to": "acknowledged",
        "by": "dana",
        "note": "restocking from the back room",
    }
    assert resolved["alert"]["status"] == "resolved"
    assert resolved["alert"]["resolved_at"] is not None
    # the value people read after resolution is the recovered one, not the breach's
    assert resolved["alert"]["value_display"] == "0"
    assert resolved["transition"]["by"] is None
    assert resolved["alert"]["concerns"] == []
    assert set(NotificationDelivery.objects.values_list("status", flat=True)) == {"sent"}


def test_the_alertmanager_format_sends_firing_then_resolved(floor):
    with Receiver() as receiver:
        webhook(receiver.url, payload_format=PayloadFormat.ALERTMANAGER, name="am")
        alert = floor.breach()
        run_jobs()
        floor.recover()
        run_jobs()
        firing, resolved = receiver.wait_for(2)

    assert (firing["version"], firing["status"], firing["receiver"]) == ("4", "firing", "am")
    (sent,) = firing["alerts"]
    assert sent["labels"] == {
        "alertname": "Negative stock at Amsterdam",
        "kind": "negative_stock",
        "severity": "critical",
        "site": "ams",
        "rule_id": str(floor.rule.pk),
    }
    assert sent["endsAt"] == "0001-01-01T00:00:00Z"
    assert sent["generatorURL"] == f"https://ops.example.com/oncall/alerts/{alert.pk}/"
    assert sent["annotations"]["summary"] == "Negative stock at Amsterdam: 1 (threshold 0)"
    assert resolved["status"] == resolved["alerts"][0]["status"] == "resolved"
    assert resolved["alerts"][0]["endsAt"].startswith("20")
    # one alert keeps one fingerprint from firing to resolution (receivers pair them by it)
    assert resolved["alerts"][0]["fingerprint"] == sent["fingerprint"]


def test_a_slack_webhook_gets_a_readable_message(floor):
    with Receiver() as receiver:
        NotificationChannel.objects.create(name="slack", kind="slack", url=receiver.url)
        alert = floor.breach()
        run_jobs()
        (body,) = receiver.wait_for(1)

    assert list(body) == ["text"]
    assert "*[CRITICAL] FIRING: Negative stock at Amsterdam (ams)*" in body["text"]
    assert f"https://ops.example.com/oncall/alerts/{alert.pk}/" in body["text"]


def test_email_goes_through_django_mail_settings(floor, settings):
    settings.MAILERS = {"default": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}}
    NotificationChannel.objects.create(
        name="night shift", kind="email", recipients="oncall@example.com,\nlead@example.com"
    )

    alert = floor.breach()
    run_jobs()
    floor.acknowledge(alert, note="on it")
    run_jobs()

    firing, acknowledged = mail.outbox
    assert firing.subject == "[CRITICAL] FIRING: Negative stock at Amsterdam (ams)"
    assert firing.to == ["oncall@example.com", "lead@example.com"]
    assert f"https://ops.example.com/oncall/alerts/{alert.pk}/" in firing.body
    assert "Concerns: ams / TEA " in firing.body
    assert acknowledged.subject.startswith("[CRITICAL] ACKNOWLEDGED:")
    assert "Acknowledged by dana: on it" in acknowledged.body
    assert NotificationDelivery.objects.filter(status="sent").count() == 2


def test_a_failing_receiver_is_retried_with_backoff_and_every_attempt_logged(floor, settings):
    settings.NOTIFICATION_RETRY_DELAYS = [1, 1, 1]
    with Receiver(statuses=(500, 503, 200)) as receiver:
        webhook(receiver.url)
        floor.breach()

        run_jobs()  # first attempt: 500
        delivery = NotificationDelivery.objects.get()
        assert (delivery.status, delivery.attempts, delivery.response_status) == (
            DeliveryStatus.RETRYING,
            1,
            500,
        )
        assert delivery.outcome == "HTTP 500 receiver is down"
        assert ScheduledJobRegistry(queue=django_rq.get_queue("default")).count == 1

        for _ in range(2):  # due after the backoff: 503, then 200
            time.sleep(1.1)
            run_jobs(with_scheduler=True)
        bodies = receiver.wait_for(3)

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.response_status) == ("sent", 3, 200)
    assert [body["event"] for body in bodies] == ["firing"] * 3
    # the job itself never failed: a receiver that is down does not fire "failed jobs"
    assert FailedJobRegistry(queue=django_rq.get_queue("default")).count == 0


def test_a_receiver_that_stays_down_is_given_up_on_and_evaluation_goes_on(floor, settings):
    settings.NOTIFICATION_RETRY_DELAYS = [0, 0]
    with Receiver(statuses=(502,)) as receiver:
        webhook(receiver.url)
        alert = floor.breach()
        run_jobs()
        receiver.wait_for(3)

        delivery = NotificationDelivery.objects.get()
        assert (delivery.status, delivery.attempts) == ("failed", 3)
        assert delivery.outcome == "HTTP 502 receiver is down (gave up after 3 attempts)"

        # and the alert's life goes on: it resolves, and that is sent (and fails) in turn
        floor.recover()
        alert.refresh_from_db()
        assert alert.status == AlertStatus.RESOLVED
        run_jobs()
    assert NotificationDelivery.objects.filter(event="resolved", status="failed").count() == 1


def test_an_unreachable_receiver_is_logged_with_the_reason(floor, settings):
    settings.NOTIFICATION_RETRY_DELAYS = []
    with Receiver() as closed:
        url = closed.url
    webhook(url)

    floor.breach()
    run_jobs()

    delivery = NotificationDelivery.objects.get()
    assert delivery.status == "failed"
    assert delivery.outcome.startswith(f"cannot reach {url}: ")


def test_a_hanging_receiver_does_not_hold_up_evaluation(floor):
    with Receiver(delay=5) as receiver:
        webhook(receiver.url)

        started = time.monotonic()
        floor.breach()
        elapsed = time.monotonic() - started

    assert elapsed < 2
    assert receiver.received == []
    assert NotificationDelivery.objects.get().status == "pending"


def test_channels_get_only_the_severities_and_events_they_ask_for(floor):
    floor.rule.severity = Severity.WARNING
    floor.rule.save()
    with Receiver() as receiver:
        webhook(receiver.url, name="pager", min_severity=Severity.CRITICAL)
        webhook(receiver.url, name="chat", on_acknowledged=False)
        webhook(receiver.url, name="off", enabled=False)

        alert = floor.breach()
        floor.acknowledge(alert)
        floor.recover()

    sent = NotificationDelivery.objects.order_by("pk").values_list("channel__name", "event")
    assert list(sent) == [("chat", "firing"), ("chat", "resolved")]


def test_a_delivery_whose_job_was_lost_is_sent_by_the_sweep(floor):
    with Receiver() as receiver:
        webhook(receiver.url)
        floor.breach()
        django_rq.get_queue("default").empty()  # as if Redis lost the job
        NotificationDelivery.objects.update(
            created_at=Alert.objects.get().opened_at.replace(year=2020)
        )

        assert notifications_stalled_requeue() == 1
        run_jobs()
        receiver.wait_for(1)

    assert NotificationDelivery.objects.get().status == "sent"


def channel_form(**fields):
    return {
        "name": "ops",
        "kind": "webhook",
        "url": "",
        "payload_format": "inventory_ops",
        "recipients": "",
        "min_severity": "info",
        "on_firing": "on",
        "on_acknowledged": "on",
        "on_resolved": "on",
        "enabled": "on",
        **fields,
    }


def test_on_call_configures_channels_in_the_admin_with_clear_errors(client):
    client.force_login(user_make(role=ON_CALL, is_staff=True))

    no_url = client.post("/admin/oncall/notificationchannel/add/", channel_form())
    bad_email = client.post(
        "/admin/oncall/notificationchannel/add/",
        channel_form(kind="email", recipients="ops@example.com, not-an-address"),
    )
    created = client.post(
        "/admin/oncall/notificationchannel/add/",
        channel_form(url="https://hooks.example.com/x", payload_format="alertmanager"),
    )

    assert no_url.context["adminform"].form.errors["url"] == [
        "A webhook needs the URL to POST notifications to."
    ]
    assert bad_email.context["adminform"].form.errors["recipients"] == [
        "'not-an-address' is not an email address."
    ]
    assert created.status_code == 302
    assert NotificationChannel.objects.get().payload_format == "alertmanager"


@pytest.mark.parametrize(("role", "status"), [(ON_CALL, 200), (MANAGERS, 200)])
def test_the_delivery_log_is_readable_in_the_admin(floor, client, settings, role, status):
    settings.NOTIFICATION_RETRY_DELAYS = []
    with Receiver(statuses=(500,)) as receiver:
        webhook(receiver.url)
        floor.breach()
        run_jobs()
    client.force_login(user_make(role=role, is_staff=True))

    page = client.get("/admin/oncall/notificationdelivery/")

    assert page.status_code == status
    assert "HTTP 500 receiver is down (gave up after 1 attempts)" in page.content.decode()


def test_the_alert_page_says_who_was_notified_and_whether_it_reached_them(floor, client, settings):
    settings.NOTIFICATION_RETRY_DELAYS = []
    with Receiver(statuses=(500,)) as failing, Receiver() as working:
        webhook(failing.url, name="old-pager")
        webhook(working.url, name="chat")
        alert = floor.breach()
        run_jobs()
    client.force_login(user_make(role=ON_CALL, is_staff=True))

    page = client.get(f"/oncall/alerts/{alert.pk}/").content.decode()

    assert page.count('data-delivery-status="sent"') == 1
    assert page.count('data-delivery-status="failed"') == 1
    assert "HTTP 500 receiver is down (gave up after 1 attempts)" in page


def test_the_alert_page_says_when_nobody_was_notified(floor, client):
    alert = floor.breach()
    client.force_login(user_make(role=ON_CALL, is_staff=True))

    page = client.get(f"/oncall/alerts/{alert.pk}/").content.decode()

    assert "Nobody was notified: no notification channel wants this alert" in page
    assert 'href="/admin/oncall/notificationchannel/">set one up</a>' in page
