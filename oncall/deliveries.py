"""Notifications of alert transitions: recorded with the transition, sent by an RQ job.

Deliveries are rows written in the alert's own transaction (so none is lost if the process
dies after the commit) and sent by `oncall.jobs.notification_deliver_job` after it: nothing
here waits on a receiver, so a slow or failing one never holds up an evaluation or a request.
A delivery whose job was lost (Redis down at the commit) is enqueued again by
`notifications_stalled_requeue`, which the scheduled evaluation runs. Payloads and transports:
`oncall.notifications`.
"""

import logging
from datetime import datetime, timedelta
from functools import partial

import django_rq
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone
from redis.exceptions import RedisError

from core.queues import DEFAULT_QUEUE
from oncall.models import (
    EVENT_OF_STATUS,
    Alert,
    AlertTransition,
    DeliveryReason,
    DeliveryStatus,
    NotificationChannel,
    NotificationDelivery,
    Silence,
)
from oncall.notifications import AlertContext, DeliveryFailed, channel_send
from oncall.selectors import alert_concerns, runbooks_by_kind

logger = logging.getLogger(__name__)

DELIVER_JOB = "oncall.jobs.notification_deliver_job"
STALLED_AFTER = timedelta(minutes=2)


def notifications_queue(
    alert: Alert,
    transition: AlertTransition,
    now: datetime,
    *,
    reason: str = DeliveryReason.TRANSITION,
    channels: list[NotificationChannel] | None = None,
) -> int:
    """Record a delivery per channel that wants this transition (or to `channels`); send them
    after the commit. Returns how many were recorded.

    Caller holds the alert's transaction. A silence matching the alert records them as
    suppressed instead: they show in the delivery log and are never sent. Once an alert has
    been escalated, its escalation channel hears the rest of its story too (acknowledged,
    resolved, re-pages), whatever it would pick by itself.
    """
    event = EVENT_OF_STATUS[transition.to_status]
    if channels is None:
        channels = [
            channel
            for channel in NotificationChannel.objects.filter(enabled=True)
            if channel.wants(event=event, severity=alert.severity)
        ]
        escalated_to = NotificationChannel.objects.filter(
            enabled=True,
            deliveries__alert=alert,
            deliveries__reason=DeliveryReason.ESCALATION,
        ).exclude(pk__in=[channel.pk for channel in channels])
        channels += list(escalated_to.distinct())
    if not channels:
        return 0
    silence = Silence.objects.active_at(now).matching(alert).order_by("-ends_at").first()
    deliveries = NotificationDelivery.objects.bulk_create(
        NotificationDelivery(
            channel=channel,
            alert=alert,
            transition=transition,
            event=event,
            reason=reason,
            status=DeliveryStatus.SUPPRESSED if silence else DeliveryStatus.PENDING,
            silence=silence,
            outcome=f"silenced until {silence.ends_at:%Y-%m-%d %H:%M} UTC: {silence.reason}"
            if silence
            else "",
            created_at=now,
        )
        for channel in channels
    )
    if silence is None:
        ids = [delivery.pk for delivery in deliveries]
        transaction.on_commit(partial(notifications_enqueue, delivery_ids=ids))
    return len(deliveries)


def notifications_enqueue(*, delivery_ids: list[int], delay: timedelta | None = None) -> None:
    """Put delivery jobs on the `default` queue; if Redis is down they wait for the sweep."""
    try:
        queue = django_rq.get_queue(DEFAULT_QUEUE, commit_mode="auto")
        for delivery_id in delivery_ids:
            if delay:
                queue.enqueue_in(delay, DELIVER_JOB, delivery_id, result_ttl=300)
            else:
                queue.enqueue(DELIVER_JOB, delivery_id, result_ttl=300)
    except RedisError as error:
        logger.warning("notifications %s not enqueued, Redis unreachable: %s", delivery_ids, error)


def _alert_context(alert: Alert, reason: str) -> AlertContext:
    runbook = runbooks_by_kind().get(alert.kind)
    # What it is about only while it lasts: a resolution has nothing left to name.
    concerns = alert_concerns(alert) if alert.is_active else []
    return AlertContext(
        runbook_url=reverse("oncall:runbook", args=[runbook.slug]) if runbook else None,
        concerns=tuple(item["label"] for item in concerns),
        reason=reason,
    )


def notification_deliver(*, delivery_id: int, now: datetime | None = None) -> str:
    """Send one delivery and record the outcome; on failure schedule a retry with backoff
    (settings.NOTIFICATION_RETRY_DELAYS) until they run out, then give up. Returns the status.

    Claimed with a conditional UPDATE, so two jobs for one delivery (a sweep after a slow
    queue) send it once.
    """
    now = now or timezone.now()
    claimed = NotificationDelivery.objects.filter(
        pk=delivery_id, status__in=[DeliveryStatus.PENDING, DeliveryStatus.RETRYING]
    ).update(status=DeliveryStatus.SENDING, attempts=F("attempts") + 1, last_attempt_at=now)
    delivery = NotificationDelivery.objects.select_related(
        "channel", "alert__site", "transition__by"
    ).get(pk=delivery_id)
    if not claimed:
        return delivery.status
    if not delivery.channel.enabled:
        return _delivery_finish(
            delivery, DeliveryStatus.CANCELLED, "channel disabled before sending"
        )
    try:
        sent = channel_send(
            delivery.channel,
            event=delivery.event,
            alert=delivery.alert,
            transition=delivery.transition,
            context=_alert_context(delivery.alert, delivery.reason),
        )
    except DeliveryFailed as failure:
        delays = settings.NOTIFICATION_RETRY_DELAYS
        delivery.response_status = failure.status
        if delivery.attempts > len(delays):
            return _delivery_finish(
                delivery,
                DeliveryStatus.FAILED,
                f"{failure} (gave up after {delivery.attempts} attempts)",
            )
        delay = timedelta(seconds=delays[delivery.attempts - 1])
        delivery.next_attempt_at = timezone.now() + delay
        _delivery_finish(delivery, DeliveryStatus.RETRYING, str(failure))
        notifications_enqueue(delivery_ids=[delivery.pk], delay=delay)
        return DeliveryStatus.RETRYING
    delivery.response_status = sent.status
    delivery.delivered_at = timezone.now()
    return _delivery_finish(delivery, DeliveryStatus.SENT, sent.detail)


def _delivery_finish(delivery: NotificationDelivery, status: str, outcome: str) -> str:
    delivery.status = status
    delivery.outcome = outcome[:2000]
    delivery.save(
        update_fields=["status", "outcome", "response_status", "delivered_at", "next_attempt_at"]
    )
    return status


def notifications_stalled_requeue(*, now: datetime | None = None) -> int:
    """Enqueue again the deliveries whose job was lost: pending or due for a retry for more than
    STALLED_AFTER, or stuck sending (the worker died mid-send). Returns how many."""
    now = now or timezone.now()
    stale = now - STALLED_AFTER
    sending_stale = now - STALLED_AFTER - timedelta(seconds=settings.NOTIFICATION_TIMEOUT)
    NotificationDelivery.objects.filter(
        status=DeliveryStatus.SENDING, last_attempt_at__lt=sending_stale
    ).update(status=DeliveryStatus.RETRYING, next_attempt_at=now)
    ids = list(
        NotificationDelivery.objects.filter(
            Q(status=DeliveryStatus.PENDING, created_at__lt=stale)
            | Q(status=DeliveryStatus.RETRYING, next_attempt_at__lt=stale)
        ).values_list("pk", flat=True)[:500]
    )
    if ids:
        notifications_enqueue(delivery_ids=ids)
    return len(ids)
