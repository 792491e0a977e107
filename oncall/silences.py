"""Silences: no notification for the alerts a silence matches until it ends; they still show.

A silence names a rule, a site or both, with an end time, a reason and who set it. A
transition of a silenced alert records its deliveries as suppressed (`oncall.deliveries`).
When a silence ends, each alert it held back that is still open (nobody acknowledged it) is
sent as firing then, so an incident that outlived its maintenance window still pages.
"""

from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from oncall.deliveries import notifications_queue
from oncall.exceptions import OncallNotAllowed, SilenceInvalid
from oncall.models import (
    SILENCE_ENDS_AFTER_START,
    SILENCE_NEEDS_A_MATCHER,
    Alert,
    AlertStatus,
    NotificationEvent,
    Silence,
)

ADD_SILENCE = "oncall.add_silence"
CHANGE_SILENCE = "oncall.change_silence"
MAX_SILENCE = timedelta(days=30)


def silence_problem(
    *,
    rule_id: int | None,
    site_id: int | None,
    starts_at: datetime,
    ends_at: datetime,
    reason: str,
    now: datetime,
) -> str | None:
    """Why these fields make no silence (for people), or None."""
    if not reason.strip():
        return "Say why: a silence needs a reason (it is shown with every alert it silences)."
    if rule_id is None and site_id is None:
        return SILENCE_NEEDS_A_MATCHER
    if ends_at <= now:
        return "The end must be in the future."
    if ends_at <= starts_at:
        return SILENCE_ENDS_AFTER_START
    if ends_at - starts_at > MAX_SILENCE:
        return "A silence lasts at most 30 days."
    return None


def silence_create(
    *,
    user,
    ends_at: datetime,
    reason: str,
    rule_id: int | None = None,
    site_id: int | None = None,
    starts_at: datetime | None = None,
) -> Silence:
    """Silence the alerts of a rule and/or a site from `starts_at` (now) until `ends_at`."""
    if not user.has_perm(ADD_SILENCE):
        raise OncallNotAllowed("you do not have permission to silence alerts")
    now = timezone.now()
    starts_at = starts_at or now
    problem = silence_problem(
        rule_id=rule_id,
        site_id=site_id,
        starts_at=starts_at,
        ends_at=ends_at,
        reason=reason,
        now=now,
    )
    if problem:
        raise SilenceInvalid(problem)
    return Silence.objects.create(
        rule_id=rule_id,
        site_id=site_id,
        starts_at=starts_at,
        ends_at=ends_at,
        reason=reason.strip(),
        created_by=user,
        created_at=now,
    )


def silence_end(*, silence_id: int, user) -> Silence:
    """End a silence now, before its end time; what it held back is sent at the next
    scheduled evaluation (`silences_ended_notify`)."""
    if not user.has_perm(CHANGE_SILENCE):
        raise OncallNotAllowed("you do not have permission to end silences")
    now = timezone.now()
    with transaction.atomic():
        silence = Silence.objects.select_for_update().filter(pk=silence_id).first()
        if silence is None:
            raise SilenceInvalid(f"No silence #{silence_id}.")
        if silence.ends_at <= now:
            raise SilenceInvalid(f"Silence #{silence_id} has already ended.")
        # A silence not started yet ends just after its start (the table keeps end > start).
        silence.ends_at = max(now, silence.starts_at + timedelta(microseconds=1))
        silence.ended_by = user
        silence.save(update_fields=["ends_at", "ended_by"])
    return silence


def silences_ended_notify(*, now: datetime | None = None) -> int:
    """Send as firing each alert that an ended silence held back and that is still open (not
    acknowledged, not covered by another silence now). Each silence is handled once. Returns
    how many alerts were sent."""
    now = now or timezone.now()
    notified = 0
    for silence_id in Silence.objects.filter(
        ends_at__lte=now, end_handled_at__isnull=True
    ).values_list("pk", flat=True):
        with transaction.atomic():
            claimed = Silence.objects.filter(pk=silence_id, end_handled_at__isnull=True).update(
                end_handled_at=now
            )
            if not claimed:
                continue  # another evaluation handled it
            held_back = Alert.objects.filter(
                status=AlertStatus.OPEN,
                deliveries__silence_id=silence_id,
                deliveries__event=NotificationEvent.FIRING,
            ).distinct()
            for alert in held_back.select_related("site"):
                if Silence.objects.active_at(now).matching(alert).exists():
                    continue
                opened = alert.transitions.filter(to_status=AlertStatus.OPEN).last()
                if opened is not None:
                    notifications_queue(alert, opened, now)
                    notified += 1
    return notified
