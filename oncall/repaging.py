"""Re-paging and escalation: an alert that stays open and unacknowledged is sent again every
`repeat_minutes` of its rule (ALERT_REPEAT_MINUTES when the rule says nothing), and, if its rule
names an escalation channel, sent there once it has been open `escalate_after_minutes`.

Run by the scheduled evaluation (oncall.jobs.alerts_scheduled_evaluation_job, every
ALERTS_EVALUATION_INTERVAL seconds), so a re-page is due at most one interval late. It stops by
itself: only open alerts are looked at (acknowledged and resolved ones are not), and an alert a
silence matches is skipped (its silence's end sends it again, oncall.silences). Each alert is
decided with its row locked, and what is due is read from the delivery log, so two evaluations
running at once page once.
"""

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from oncall.deliveries import notifications_queue
from oncall.models import (
    Alert,
    AlertStatus,
    DeliveryReason,
    DeliveryStatus,
    NotificationEvent,
    Silence,
)


def alerts_repage(*, now: datetime | None = None) -> int:
    """Queue the re-pages and escalations that are due; return how many deliveries."""
    now = now or timezone.now()
    queued = 0
    open_alerts = Alert.objects.filter(status=AlertStatus.OPEN, rule__isnull=False)
    for alert in open_alerts.select_related("rule"):
        if Silence.objects.active_at(now).matching(alert).exists():
            continue
        queued += _alert_repage(alert.pk, now)
    return queued


def repeat_interval(rule) -> timedelta | None:
    minutes = rule.repeat_minutes
    if minutes is None:
        minutes = settings.ALERT_REPEAT_MINUTES
    return timedelta(minutes=minutes) if minutes > 0 else None


@transaction.atomic
def _alert_repage(alert_id: int, now: datetime) -> int:
    alert = (
        Alert.objects.select_for_update(of=("self",))
        .select_related("rule__escalation_channel", "site")
        .filter(pk=alert_id, status=AlertStatus.OPEN)
        .first()
    )
    if alert is None:  # acknowledged or resolved meanwhile
        return 0
    opened = alert.transitions.filter(to_status=AlertStatus.OPEN).last()
    if opened is None:
        return 0
    rule, queued = alert.rule, 0
    interval = repeat_interval(rule)
    if interval is not None:
        # From the last firing actually sent to the channels (not a silenced one, not the
        # escalation): a silence's end or a re-page restarts the count.
        last = (
            alert.deliveries.filter(
                event=NotificationEvent.FIRING,
                reason__in=[DeliveryReason.TRANSITION, DeliveryReason.REPEAT],
            )
            .exclude(status=DeliveryStatus.SUPPRESSED)
            .aggregate(last=Max("created_at"))["last"]
        )
        if now - (last or alert.opened_at) >= interval:
            queued += notifications_queue(alert, opened, now, reason=DeliveryReason.REPEAT)
    escalation = rule.escalation_channel
    if (
        escalation is not None
        and rule.escalate_after_minutes is not None
        and now - alert.opened_at >= timedelta(minutes=rule.escalate_after_minutes)
        and not alert.deliveries.filter(reason=DeliveryReason.ESCALATION).exists()
    ):
        queued += notifications_queue(
            alert, opened, now, reason=DeliveryReason.ESCALATION, channels=[escalation]
        )
    return queued
