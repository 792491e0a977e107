"""Test-send: one notification that says it is a test, sent through a channel at once, so an
operator setting a channel up sees in the admin whether it reaches its receiver.

Sent in the admin's request (the operator waits for the answer, at most NOTIFICATION_TIMEOUT),
with the channel's saved settings, and not logged as a delivery: no alert is behind it. The
payloads are documented in docs/oncall.md ("Test-send").
"""

from datetime import timedelta

from django.core.mail import send_mail
from django.urls import reverse
from django.utils import timezone

from oncall.models import NotificationChannel, PayloadFormat
from oncall.notifications import (
    DeliveryFailed,
    Sent,
    absolute_url,
    channel_post,
    iso_time,
)

TEST_ALERT_NAME = "inventory_ops test notification"
# How long an Alertmanager-format receiver should keep the test alert before it ends by itself.
ALERTMANAGER_TEST_LIFETIME = timedelta(minutes=5)


def check_message(channel: NotificationChannel, by: str) -> str:
    return (
        f"Test notification from inventory_ops to the channel {channel.name!r}, sent by {by}. "
        "If you read this, alerts reach you here. No alert is open because of it."
    )


def check_payload(channel: NotificationChannel, *, by: str, now) -> dict:
    """The body a test-send POSTs, in the channel's own format."""
    message = check_message(channel, by)
    if channel.kind == NotificationChannel.Kind.SLACK:
        return {"text": f":test_tube: *[TEST] inventory_ops notifications*\n{message}"}
    if channel.payload_format == PayloadFormat.ALERTMANAGER:
        labels = {"alertname": TEST_ALERT_NAME, "severity": "info", "test": "true"}
        annotations = {"summary": "Test notification", "description": message}
        return {
            "version": "4",
            "groupKey": f'{{}}:{{alertname="{TEST_ALERT_NAME}"}}',
            "truncatedAlerts": 0,
            "status": "firing",
            "receiver": channel.name,
            "groupLabels": {"alertname": TEST_ALERT_NAME},
            "commonLabels": labels,
            "commonAnnotations": annotations,
            "externalURL": absolute_url(reverse("oncall:console")),
            "alerts": [
                {
                    "status": "firing",
                    "labels": labels,
                    "annotations": annotations,
                    "startsAt": iso_time(now),
                    # Ends by itself: a receiver built for Alertmanager keeps no stale test alert.
                    "endsAt": iso_time(now + ALERTMANAGER_TEST_LIFETIME),
                    "generatorURL": absolute_url(reverse("oncall:console")),
                    "fingerprint": f"test-{channel.pk}",
                }
            ],
        }
    return {
        "version": 1,
        "event": "test",
        "channel": channel.name,
        "message": message,
        "sent_at": iso_time(now),
        "by": by,
        "alert": None,
        "transition": None,
    }


def channel_test_send(channel: NotificationChannel, *, by: str) -> Sent:
    """Send a test notification through `channel` now; raise DeliveryFailed if it did not go."""
    now = timezone.now()
    if channel.kind == NotificationChannel.Kind.EMAIL:
        recipients = channel.recipient_list
        try:
            send_mail(
                f"[TEST] inventory_ops notifications to {channel.name}",
                check_message(channel, by) + "\n",
                None,
                recipients,
            )
        except (OSError, ValueError) as error:  # smtplib's errors are OSErrors
            raise DeliveryFailed(f"mail not sent: {error}") from None
        return Sent(None, f"mailed to {', '.join(recipients)}")
    return channel_post(channel, check_payload(channel, by=by, now=now))
