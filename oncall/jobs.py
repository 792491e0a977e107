"""RQ jobs of the on-call app: alert evaluations, notification deliveries, long remediations."""

import io
import logging

from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from ingest.housekeeping import housekeeping_schedule_ensure
from oncall.alerts import pending_sites_take
from oncall.deliveries import notification_deliver, notifications_stalled_requeue
from oncall.models import RemediationAction, RemediationStatus
from oncall.repaging import alerts_repage
from oncall.schedule import alerts_schedule_ensure, scheduled_run_claim
from oncall.services import alerts_evaluate
from oncall.silences import silences_ended_notify

logger = logging.getLogger(__name__)


def alerts_evaluation_job() -> int:
    """Evaluate the rules of the sites that changed since the last run (and all-sites rules)."""
    changes = alerts_evaluate(site_codes=pending_sites_take())
    alerts_schedule_ensure()
    return len(changes)


def alerts_scheduled_evaluation_job() -> int | None:
    """Evaluate every rule: catches what no write announces (a silent feed, failed jobs)."""
    if not scheduled_run_claim():
        return None
    # The alert chain is the one every path keeps alive (console, evaluations, release): it
    # restarts the housekeeping chain too if Redis lost it.
    housekeeping_schedule_ensure()
    changes = alerts_evaluate(site_codes=None)
    notifications_stalled_requeue()
    silences_ended_notify()
    alerts_repage()
    return len(changes)


def notification_deliver_job(delivery_id: int) -> str:
    """Send one notification (retries are scheduled by the service, not by RQ: a receiver that
    stays down must not fill the failed-job registry and fire the failed-jobs alert)."""
    return notification_deliver(delivery_id=delivery_id)


def rebuild_kpis_job(action_id: int) -> str:
    """Run `rebuild_kpis --site` for a remediation and record its outcome on the action."""
    action = RemediationAction.objects.get(pk=action_id)
    output = io.StringIO()
    try:
        call_command("rebuild_kpis", site=action.target, stdout=output, stderr=output)
    except (CommandError, KeyError, LookupError) as error:
        # KeyError: the command does not exist (yet) in this deployment.
        status, result = RemediationStatus.FAILED, f"{output.getvalue()}\n{error!r}".strip()
    else:
        status, result = RemediationStatus.SUCCEEDED, output.getvalue().strip() or "done"
    RemediationAction.objects.filter(pk=action_id).update(
        status=status, result=result[-5000:], finished_at=timezone.now()
    )
    return status
