"""What a notification says and how it goes out: payloads per channel kind, HTTP and email.

Pure functions from an alert (and the transition that caused the notification) to a payload,
and two transports: a JSON POST (urllib: no client library needed for one request) and Django's
mail. Called only from `oncall.services.notification_deliver`, in an RQ worker: never in a
request or an evaluation, so a slow or failing receiver cannot hold either up.
"""

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.core.mail import send_mail
from django.urls import reverse

from oncall.measures import measure_shown
from oncall.models import Alert, AlertTransition, NotificationChannel, PayloadFormat

PAYLOAD_VERSION = 1
# Alertmanager marks "not ended yet" with Go's zero time.
ALERTMANAGER_NO_END = "0001-01-01T00:00:00Z"
RESPONSE_EXCERPT = 500


class DeliveryFailed(Exception):
    """The receiver refused or could not be reached; `str()` says how (kept in the log)."""

    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Sent:
    status: int | None
    detail: str


@dataclass(frozen=True)
class AlertContext:
    """What a notification says beside the alert itself, read when it is sent: the runbook
    covering its kind (a path) and what it is about now (`oncall.selectors.alert_concerns`)."""

    runbook_url: str | None
    concerns: tuple[str, ...] = ()
    # Why it is sent: "transition", "repeat" (still firing, nobody acknowledged) or "escalation".
    reason: str = "transition"


def absolute_url(path: str) -> str:
    return settings.PUBLIC_URL.rstrip("/") + path


def iso_time(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


def alert_document(alert: Alert, context: AlertContext) -> dict:
    """The alert as the generic payload's `alert` object (documented in docs/oncall.md)."""
    current = alert.last_value if alert.last_value is not None else alert.value
    return {
        "id": alert.pk,
        "url": absolute_url(reverse("oncall:alert", args=[alert.pk])),
        "title": alert.title,
        "kind": alert.kind,
        "kind_label": alert.get_kind_display(),
        "severity": alert.severity,
        "status": alert.status,
        "site": alert.site.code if alert.site_id else None,
        "concerns": list(context.concerns),
        "value": str(current),
        "value_display": measure_shown(current, alert.kind),
        "threshold": str(alert.threshold),
        "threshold_display": measure_shown(alert.threshold, alert.kind),
        "opened_at": iso_time(alert.opened_at),
        "resolved_at": iso_time(alert.resolved_at),
        "runbook_url": absolute_url(context.runbook_url) if context.runbook_url else None,
    }


def generic_payload(
    *, event: str, alert: Alert, transition: AlertTransition | None, context: AlertContext
) -> dict:
    return {
        "version": PAYLOAD_VERSION,
        "event": event,
        "reason": context.reason,
        "alert": alert_document(alert, context),
        "transition": None
        if transition is None
        else {
            "from": transition.from_status or None,
            "to": transition.to_status,
            "at": iso_time(transition.at),
            "by": transition.by.get_username() if transition.by_id else None,
            "note": transition.note,
        },
    }


def fingerprint(alert: Alert) -> str:
    """Stable per rule and scope, as Alertmanager's is per label set."""
    key = f"{alert.rule_id or 'alert-' + str(alert.pk)}:{alert.site_id or '*'}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def alertmanager_payload(
    *,
    event: str,
    alert: Alert,
    transition: AlertTransition | None,
    context: AlertContext,
    receiver: str,
) -> dict:
    """Alertmanager's webhook body (version 4) with one alert, for receivers built for it.

    Alertmanager has no "acknowledged": an acknowledged alert is still `firing`, with who and the
    note in its annotations.
    """
    document = alert_document(alert, context)
    labels = {
        "alertname": alert.title,
        "kind": alert.kind,
        "severity": alert.severity,
        "site": document["site"] or "all",
    }
    if alert.rule_id:
        labels["rule_id"] = str(alert.rule_id)
    annotations = {
        "summary": f"{alert.title}: {document['value_display']} "
        f"(threshold {document['threshold_display']})",
        "description": "; ".join(context.concerns) or alert.get_kind_display(),
    }
    if document["runbook_url"]:
        annotations["runbook_url"] = document["runbook_url"]
    if transition is not None and transition.to_status == "acknowledged":
        annotations["acknowledged_by"] = (
            transition.by.get_username() if transition.by_id else "alert evaluator"
        )
        annotations["acknowledgement_note"] = transition.note
    if context.reason != "transition":
        annotations["notification_reason"] = context.reason
    status = "resolved" if event == "resolved" else "firing"
    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{alert.title}"}}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": receiver,
        "groupLabels": {"alertname": alert.title},
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": absolute_url(reverse("oncall:console")),
        "alerts": [
            {
                "status": status,
                "labels": labels,
                "annotations": annotations,
                "startsAt": document["opened_at"],
                "endsAt": document["resolved_at"] or ALERTMANAGER_NO_END,
                "generatorURL": document["url"],
                "fingerprint": fingerprint(alert),
            }
        ],
    }


EVENT_HEADLINE = {
    "firing": "FIRING",
    "acknowledged": "ACKNOWLEDGED",
    "resolved": "RESOLVED",
}


REASON_SUFFIX = {"repeat": " (still firing, not acknowledged)", "escalation": " (escalated)"}


def headline(*, event: str, alert: Alert, reason: str = "transition") -> str:
    scope = alert.site.code if alert.site_id else "all sites"
    return (
        f"[{alert.severity.upper()}] {EVENT_HEADLINE[event]}{REASON_SUFFIX.get(reason, '')}: "
        f"{alert.title} ({scope})"
    )


def text_lines(
    *, event: str, alert: Alert, transition: AlertTransition | None, context: AlertContext
) -> list[str]:
    document = alert_document(alert, context)
    lines = [
        f"{alert.get_kind_display()}: {document['value_display']} "
        f"(threshold {document['threshold_display']})"
    ]
    if context.concerns:
        lines.append("Concerns: " + "; ".join(context.concerns))
    if transition is not None and transition.to_status != "open":
        who = transition.by.get_username() if transition.by_id else "the alert evaluator"
        lines.append(
            f"{transition.get_to_status_display()} by {who}: {transition.note}".rstrip(": ")
        )
    lines.append(f"Alert: {document['url']}")
    if document["runbook_url"]:
        lines.append(f"Runbook: {document['runbook_url']}")
    return lines


SLACK_EMOJI = {
    "firing": ":rotating_light:",
    "acknowledged": ":eyes:",
    "resolved": ":white_check_mark:",
}


def slack_payload(
    *, event: str, alert: Alert, transition: AlertTransition | None, context: AlertContext
) -> dict:
    """An incoming-webhook message: `text` (read by Slack, Mattermost, Rocket.Chat alike)."""
    title = headline(event=event, alert=alert, reason=context.reason)
    body = text_lines(event=event, alert=alert, transition=transition, context=context)
    return {"text": f"{SLACK_EMOJI.get(event, '')} *{title}*\n" + "\n".join(body)}


SIGNATURE_HEADER = "X-Inventory-Ops-Signature"
TIMESTAMP_HEADER = "X-Inventory-Ops-Timestamp"


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=` and the hex HMAC-SHA256 of `<timestamp>.<body>` keyed with the secret: the
    receiver checks both the body and when it was sent (docs/oncall.md has the recipe)."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def post_json(url: str, payload: dict, *, secret: str = "", authorization: str = "") -> Sent:
    """POST `payload` as JSON; a 2xx answer is delivered, anything else raises DeliveryFailed.

    With a secret the body is signed (a fresh timestamp each attempt, so a retry is not taken
    for a replay); with `authorization` that is sent as the Authorization header.
    """
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "inventory_ops-notify/1"}
    if secret:
        timestamp = str(int(time.time()))
        headers[TIMESTAMP_HEADER] = timestamp
        headers[SIGNATURE_HEADER] = signature(secret, timestamp, body)
    if authorization:
        headers["Authorization"] = authorization
    request = urllib.request.Request(  # noqa: S310 (an operator-configured http(s) URL)
        url, data=body, headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(  # noqa: S310
            request, timeout=settings.NOTIFICATION_TIMEOUT
        ) as response:
            excerpt = response.read(RESPONSE_EXCERPT).decode(errors="replace")
            return Sent(response.status, f"HTTP {response.status} {excerpt}".strip())
    except urllib.error.HTTPError as error:
        excerpt = error.read(RESPONSE_EXCERPT).decode(errors="replace")
        raise DeliveryFailed(f"HTTP {error.code} {excerpt}".strip(), status=error.code) from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise DeliveryFailed(f"cannot reach {url}: {reason}") from None


def channel_post(channel: NotificationChannel, payload: dict) -> Sent:
    """POST to a webhook channel with its authentication (signature, Authorization)."""
    return post_json(
        channel.url,
        payload,
        secret=channel.signing_secret,
        authorization=channel.authorization,
    )


def channel_send(
    channel: NotificationChannel,
    *,
    event: str,
    alert: Alert,
    transition: AlertTransition | None,
    context: AlertContext,
) -> Sent:
    """Send one notification through `channel`; raise DeliveryFailed if it did not go."""
    arguments = {
        "event": event,
        "alert": alert,
        "transition": transition,
        "context": context,
    }
    if channel.kind == NotificationChannel.Kind.EMAIL:
        subject = headline(event=event, alert=alert, reason=context.reason)
        body = "\n".join(text_lines(**arguments)) + "\n"
        try:
            send_mail(subject, body, None, channel.recipient_list)
        except (OSError, ValueError) as error:  # smtplib's errors are OSErrors
            raise DeliveryFailed(f"mail not sent: {error}") from None
        return Sent(None, f"mailed to {', '.join(channel.recipient_list)}")
    if channel.kind == NotificationChannel.Kind.SLACK:
        return channel_post(channel, slack_payload(**arguments))
    if channel.payload_format == PayloadFormat.ALERTMANAGER:
        return channel_post(channel, alertmanager_payload(**arguments, receiver=channel.name))
    return channel_post(channel, generic_payload(**arguments))
