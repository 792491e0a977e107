"""Test-send from a notification channel's admin page: one notification marked as a test,
sent at once to a real local HTTP receiver (or Django's locmem mail), and what came back shown
on the page."""

import pytest
from django.core import mail

from core.roles import MANAGERS, ON_CALL
from oncall.models import NotificationChannel, NotificationDelivery, PayloadFormat
from tests.builders import user_make
from tests.oncall.receiver import Receiver

pytestmark = pytest.mark.django_db


def logged_in(client, role, username="dana"):
    client.force_login(user_make(username, role=role, is_staff=True))


def send_test(client, channel):
    return client.post(f"/admin/oncall/notificationchannel/{channel.pk}/test-send/", follow=True)


def shown(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def test_a_test_send_reaches_the_webhook_and_the_page_says_what_it_answered(client, settings):
    settings.PUBLIC_URL = "https://ops.example.com"
    logged_in(client, ON_CALL)
    with Receiver() as receiver:
        channel = NotificationChannel.objects.create(
            name="ops-hook", kind="webhook", url=receiver.url
        )

        response = send_test(client, channel)

        (body,) = receiver.wait_for(1)
    # back on the channel's page, with the receiver's answer
    assert response.redirect_chain == [
        (f"/admin/oncall/notificationchannel/{channel.pk}/change/", 302)
    ]
    assert shown(response) == ["Test notification sent to ops-hook: HTTP 200 ok"]
    assert body == {
        "version": 1,
        "event": "test",
        "channel": "ops-hook",
        "message": "Test notification from inventory_ops to the channel 'ops-hook', sent by "
        "dana. If you read this, alerts reach you here. No alert is open because of it.",
        "sent_at": body["sent_at"],
        "by": "dana",
        "alert": None,
        "transition": None,
    }
    assert body["sent_at"].endswith("Z")
    assert receiver.received[0].headers["Content-Type"] == "application/json"
    # a test is not an alert's delivery: the delivery log stays as it was
    assert not NotificationDelivery.objects.exists()


def test_a_failing_receiver_is_shown_as_failed_with_its_answer(client):
    logged_in(client, ON_CALL)
    with Receiver(statuses=(502,)) as receiver:
        channel = NotificationChannel.objects.create(name="pager", kind="slack", url=receiver.url)

        response = send_test(client, channel)

        (body,) = receiver.wait_for(1)
    assert shown(response) == ["Test notification to pager failed: HTTP 502 receiver is down"]
    assert body["text"].startswith(":test_tube: *[TEST] inventory_ops notifications*\n")
    assert "alerts reach you here" in body["text"]


def test_an_unreachable_receiver_is_shown_with_the_reason(client):
    logged_in(client, ON_CALL)
    with Receiver() as closed:
        url = closed.url
    channel = NotificationChannel.objects.create(name="gone", kind="webhook", url=url)

    response = send_test(client, channel)

    (message,) = shown(response)
    assert message.startswith(f"Test notification to gone failed: cannot reach {url}: ")


def test_an_alertmanager_receiver_gets_a_test_alert_that_ends_by_itself(client):
    logged_in(client, ON_CALL)
    with Receiver() as receiver:
        channel = NotificationChannel.objects.create(
            name="am", kind="webhook", url=receiver.url, payload_format=PayloadFormat.ALERTMANAGER
        )

        send_test(client, channel)

        (body,) = receiver.wait_for(1)
    (alert,) = body["alerts"]
    assert (body["version"], body["status"], body["receiver"]) == ("4", "firing", "am")
    assert alert["labels"] == {
        "alertname": "inventory_ops test notification",
        "severity": "info",
        "test": "true",
    }
    assert alert["endsAt"] > alert["startsAt"]


def test_an_email_channel_mails_a_test_to_its_recipients(client, settings):
    settings.MAILERS = {"default": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}}
    logged_in(client, ON_CALL)
    channel = NotificationChannel.objects.create(
        name="ops-mail", kind="email", recipients="a@example.com, b@example.com"
    )

    response = send_test(client, channel)

    assert shown(response) == [
        "Test notification sent to ops-mail: mailed to a@example.com, b@example.com"
    ]
    (message,) = mail.outbox
    assert message.subject == "[TEST] inventory_ops notifications to ops-mail"
    assert message.to == ["a@example.com", "b@example.com"]


def test_the_button_is_on_the_channel_page_for_who_may_change_channels(client):
    channel = NotificationChannel.objects.create(
        name="ops-hook", kind="webhook", url="http://127.0.0.1:9/"
    )
    logged_in(client, ON_CALL)

    page = client.get(f"/admin/oncall/notificationchannel/{channel.pk}/change/")

    assert "Send a test notification" in page.text
    action = f'action="/admin/oncall/notificationchannel/{channel.pk}/test-send/"'
    assert action in page.text
    # outside the channel's own form: a nested form's button would post the outer one
    assert page.text.index(action) > page.text.index("</form>")


def test_managers_see_no_button_and_cannot_send(client):
    channel = NotificationChannel.objects.create(
        name="ops-hook", kind="webhook", url="http://127.0.0.1:9/"
    )
    logged_in(client, MANAGERS)

    page = client.get(f"/admin/oncall/notificationchannel/{channel.pk}/change/")
    sent = client.post(f"/admin/oncall/notificationchannel/{channel.pk}/test-send/")

    assert page.status_code == 200
    assert "Send a test notification" not in page.text
    assert sent.status_code == 403


def test_a_test_send_is_a_post_and_names_an_existing_channel(client):
    logged_in(client, ON_CALL)
    channel = NotificationChannel.objects.create(
        name="ops-hook", kind="webhook", url="http://127.0.0.1:9/"
    )

    assert (
        client.get(f"/admin/oncall/notificationchannel/{channel.pk}/test-send/").status_code == 405
    )
    assert client.post("/admin/oncall/notificationchannel/999/test-send/").status_code == 404
