"""Writes of the on-call domain: alert lifecycle, runbook edits, remediations."""

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import django_rq
from django.db import DatabaseError, transaction
from django.utils import timezone
from redis.exceptions import RedisError
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.registry import FailedJobRegistry

from core.notify import alerts_changed_notify
from core.queues import DEFAULT_QUEUE, QUEUE_NAMES
from ingest.dead_letters import dead_letters_replay
from ingest.models import DeadLetter, DeadLetterStatus
from ledger.models import Site
from oncall.deliveries import notifications_queue
from oncall.exceptions import (
    AlertTransitionRefused,
    NoteRequired,
    OncallError,
    OncallNotAllowed,
    StillBreaching,
)
from oncall.measures import MeasureCache, measure_shown, rule_measure
from oncall.models import (
    ACTIVE_STATUSES,
    KINDS_BREACHING_BELOW,
    Alert,
    AlertRule,
    AlertRuleState,
    AlertStatus,
    AlertTransition,
    RemediationAction,
    RemediationKind,
    RemediationStatus,
    Runbook,
    RunbookVersion,
)

logger = logging.getLogger(__name__)

CHANGE_ALERT = "oncall.change_alert"


@dataclass(frozen=True, slots=True)
class AlertChange:
    alert_id: int
    rule_id: int
    site: str | None
    to_status: str


def is_breaching(rule: AlertRule, value: Decimal) -> bool:
    if rule.kind in KINDS_BREACHING_BELOW:
        return value < rule.threshold
    return value > rule.threshold


def alerts_evaluate(
    *, site_codes: Iterable[str] | None = None, now: datetime | None = None
) -> list[AlertChange]:
    """Evaluate the enabled rules of these sites and every all-sites rule (None: every rule).

    Opens an alert when a rule has breached for its hold time, resolves it when it recovers;
    announces the sites whose alerts changed. Measures are taken outside any transaction (KPIs
    can be costly); each rule's decision is taken with its state row locked, so concurrent
    evaluations never open two alerts for one rule.
    """
    now = now or timezone.now()
    rules = AlertRule.objects.filter(enabled=True).select_related("site")
    if site_codes is not None:
        rules = rules.filter(site__isnull=True) | rules.filter(site__code__in=list(site_codes))
    rules = list(rules.order_by("pk"))
    states = {state.rule_id: state for state in AlertRuleState.objects.filter(rule__in=rules)}
    active_rule_ids = set(
        Alert.objects.filter(rule__in=rules, status__in=ACTIVE_STATUSES).values_list(
            "rule_id", flat=True
        )
    )
    cache = MeasureCache()
    changes: list[AlertChange] = []
    quiet: list[AlertRuleState] = []
    for rule in rules:
        value = rule_measure(rule, cache)
        state = states.get(rule.pk)
        # Most rules, most of the time: nothing open, nothing breaching, nothing to decide.
        # Their last value is written in one statement below instead of a locked transaction
        # each (a commit per rule made 50 rules cost a second).
        if (
            state is not None
            and rule.pk not in active_rule_ids
            and (value is None or (not is_breaching(rule, value) and state.breaching_since is None))
        ):
            state.last_value, state.last_evaluated_at = value, now
            quiet.append(state)
            continue
        change = _rule_decide(rule=rule, value=value, now=now)
        if change:
            changes.append(change)
    AlertRuleState.objects.bulk_update(quiet, ["last_value", "last_evaluated_at"], batch_size=500)
    return changes


@transaction.atomic
def _rule_decide(*, rule: AlertRule, value: Decimal | None, now: datetime) -> AlertChange | None:
    AlertRuleState.objects.get_or_create(rule=rule)
    state = AlertRuleState.objects.select_for_update().get(rule=rule)
    active = Alert.objects.filter(rule=rule, status__in=ACTIVE_STATUSES).first()
    state.last_value, state.last_evaluated_at = value, now
    change = None
    if value is None:
        pass  # no data: keep whatever is open, start no clock
    elif is_breaching(rule, value):
        state.breaching_since = state.breaching_since or now
        if active:
            Alert.objects.filter(pk=active.pk).update(last_value=value)
        elif now - state.breaching_since >= timedelta(seconds=rule.hold_seconds):
            alert = Alert.objects.create(
                rule=rule,
                title=rule.name,
                kind=rule.kind,
                severity=rule.severity,
                site=rule.site,
                threshold=rule.threshold,
                value=value,
                last_value=value,
                status=AlertStatus.OPEN,
                opened_at=now,
            )
            opened = _transition_record(
                alert, "", AlertStatus.OPEN, now, None, _measure_note(rule, value)
            )
            notifications_queue(alert, opened, now)
            change = AlertChange(alert.pk, rule.pk, _site_code(rule), AlertStatus.OPEN)
    else:
        state.breaching_since = None
        if active:
            active.last_value = value
            resolved = _status_set(
                active, AlertStatus.RESOLVED, now, None, f"recovered: {_measure_note(rule, value)}"
            )
            notifications_queue(active, resolved, now)
            change = AlertChange(active.pk, rule.pk, _site_code(rule), AlertStatus.RESOLVED)
    state.save()
    if change:
        _announce_after_commit(change.site)
    return change


def _site_code(rule: AlertRule) -> str | None:
    return rule.site.code if rule.site_id else None


def _measure_note(rule: AlertRule, value: Decimal) -> str:
    side = "below" if rule.kind in KINDS_BREACHING_BELOW else "above"
    shown, threshold = measure_shown(value, rule.kind), measure_shown(rule.threshold, rule.kind)
    return f"value {shown} (breaches {side} {threshold})"


def _announce_after_commit(site_code: str | None) -> None:
    # site_codes=None: an all-sites alert, shown on every dashboard.
    site_codes = None if site_code is None else [site_code]
    alerts_changed_notify(site_codes=site_codes)


def _transition_record(alert, from_status, to_status, at, by, note) -> AlertTransition:
    return AlertTransition.objects.create(
        alert=alert, from_status=from_status, to_status=to_status, at=at, by=by, note=note
    )


def _status_set(alert: Alert, status: str, at: datetime, by, note: str) -> AlertTransition:
    previous = alert.status
    alert.status = status
    fields = ["status", "last_value"]
    if status == AlertStatus.RESOLVED:
        alert.resolved_at = at
        fields.append("resolved_at")
    alert.save(update_fields=fields)
    return _transition_record(alert, previous, status, at, by, note)


ALLOWED_MOVES = {
    AlertStatus.ACKNOWLEDGED: {AlertStatus.OPEN},
    AlertStatus.RESOLVED: {AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED},
}


def _transition_problem(alert: Alert | None, alert_id: int, to_status: str, note: str):
    """Why this move cannot be made (an exception to raise), or None."""
    if alert is None:
        return AlertTransitionRefused(f"no alert #{alert_id}")
    if alert.status not in ALLOWED_MOVES[to_status]:
        return AlertTransitionRefused(
            f"alert #{alert_id} is {alert.get_status_display().lower()}; it cannot be "
            f"{AlertStatus(to_status).label.lower()} now"
        )
    if to_status == AlertStatus.ACKNOWLEDGED and not note.strip():
        return NoteRequired(
            "a note is required to acknowledge: say what you are doing about it, so the next "
            "person knows"
        )
    return None


def _still_breaching(alert: Alert) -> StillBreaching | None:
    """Refuse a resolve while the rule's condition still holds, measured now (not the last
    evaluation's value: the cause may have been fixed a second ago). Resolving it would only
    reopen it at the next evaluation and page everyone again; a silence is what stops the
    paging. No data, a disabled or deleted rule: nothing would reopen it, the resolve stands."""
    rule = (
        AlertRule.objects.filter(pk=alert.rule_id, enabled=True).select_related("site").first()
        if alert.rule_id
        else None
    )
    if rule is None:
        return None
    value = rule_measure(rule, MeasureCache())
    if value is None or not is_breaching(rule, value):
        return None
    Alert.objects.filter(pk=alert.pk, status__in=ACTIVE_STATUSES).update(last_value=value)
    return StillBreaching(
        f"not resolved: the condition still holds ({_measure_note(rule, value)}), so the "
        "alert would open again at the next evaluation. It resolves by itself once the value "
        "recovers; to stop the notifications meanwhile, silence this rule",
        value=value,
    )


def alert_transition(*, alert_id: int, to_status: str, user, note: str = "") -> Alert:
    """Acknowledge or resolve an alert by hand, keeping who, when and the note.

    A resolve is refused (StillBreaching) while the rule still breaches: see `_still_breaching`.
    """
    if not user.has_perm(CHANGE_ALERT):
        raise OncallNotAllowed("you do not have permission to acknowledge or resolve alerts")
    if to_status not in ALLOWED_MOVES:
        raise AlertTransitionRefused(f"an alert cannot be moved to {to_status!r} by hand")
    # Checked before measuring (outside any transaction: a KPI read can take a while), and again
    # under the lock below.
    current = Alert.objects.filter(pk=alert_id).first()
    problem = _transition_problem(current, alert_id, to_status, note)
    if problem is None and to_status == AlertStatus.RESOLVED:
        problem = _still_breaching(current)
    if problem is not None:
        raise problem
    with transaction.atomic():
        alert = (
            Alert.objects.select_for_update(of=("self",))
            .select_related("site")
            .filter(pk=alert_id)
            .first()
        )
        problem = _transition_problem(alert, alert_id, to_status, note)
        if problem is not None:
            raise problem
        now = timezone.now()
        transition = _status_set(alert, to_status, now, user, note.strip())
        notifications_queue(alert, transition, now)
        if to_status == AlertStatus.RESOLVED and alert.rule_id:
            # A breach starting after this resolve must hold again before a new alert opens.
            AlertRuleState.objects.filter(rule_id=alert.rule_id).update(breaching_since=None)
        _announce_after_commit(alert.site.code if alert.site_id else None)
    return alert


@transaction.atomic
def runbook_save(*, runbook: Runbook, edited_by) -> RunbookVersion:
    """Save a runbook and keep this state of it as a new version."""
    runbook.updated_at = timezone.now()
    runbook.save()
    last = (
        RunbookVersion.objects.select_for_update()
        .filter(runbook=runbook)
        .order_by("-number")
        .values_list("number", flat=True)
        .first()
    )
    return RunbookVersion.objects.create(
        runbook=runbook,
        number=(last or 0) + 1,
        title=runbook.title,
        owner=runbook.owner,
        last_reviewed=runbook.last_reviewed,
        alert_kinds=list(runbook.alert_kinds),
        diagnostics=list(runbook.diagnostics),
        body=runbook.body,
        edited_by=edited_by,
        edited_at=runbook.updated_at,
    )


def runbooks_load(*, directory) -> dict[str, list[str]]:
    """Load the shipped runbooks (docs/runbooks/*.md) idempotently.

    A new slug is created; an unchanged one is left alone; a changed file updates the runbook
    only if nobody edited it in the admin since it was loaded (its newest version came from a
    file), so a person's edit is never overwritten. Each update is a new version.
    """
    from oncall.runbooks import runbook_file_parse

    outcome: dict[str, list[str]] = {"created": [], "updated": [], "unchanged": [], "kept": []}
    for path in sorted(directory.glob("*.md")):
        parsed = runbook_file_parse(path.read_text(encoding="utf-8"), slug=path.stem)
        fields = {
            "title": parsed.title,
            "owner": parsed.owner,
            "last_reviewed": parsed.last_reviewed,
            "alert_kinds": parsed.alert_kinds,
            "diagnostics": parsed.diagnostics,
            "body": parsed.body,
        }
        with transaction.atomic():
            runbook = Runbook.objects.select_for_update().filter(slug=parsed.slug).first()
            if runbook is None:
                runbook_save(runbook=Runbook(slug=parsed.slug, **fields), edited_by=None)
                outcome["created"].append(parsed.slug)
                continue
            if all(getattr(runbook, name) == value for name, value in fields.items()):
                outcome["unchanged"].append(parsed.slug)
                continue
            newest = runbook.versions.order_by("-number").first()
            if newest is not None and newest.edited_by_id is not None:
                outcome["kept"].append(parsed.slug)
                continue
            for name, value in fields.items():
                setattr(runbook, name, value)
            runbook_save(runbook=runbook, edited_by=None)
            outcome["updated"].append(parsed.slug)
    return outcome


RUN_REMEDIATION = "inventory_ops.run_remediation"


def _remediation_start(*, actor, kind: str, target: str) -> RemediationAction:
    if not actor.has_perm(RUN_REMEDIATION):
        raise OncallNotAllowed("you do not have permission to run remediations")
    # Recorded before it runs: an action that crashes half-way still shows who started it.
    return RemediationAction.objects.create(
        kind=kind,
        target=target[:500],
        actor=actor,
        requested_at=timezone.now(),
        status=RemediationStatus.RUNNING,
    )


def _remediation_finish(action: RemediationAction, *, succeeded: bool, result: str) -> None:
    action.status = RemediationStatus.SUCCEEDED if succeeded else RemediationStatus.FAILED
    action.result = result[-5000:]
    action.finished_at = timezone.now()
    action.save(update_fields=["status", "result", "finished_at"])


def remediation_requeue_failed_jobs(
    *, actor, job_ids: Iterable[str] | None = None
) -> RemediationAction:
    """Put failed RQ jobs back on their queues (all of them, or the ids given)."""
    wanted = set(job_ids) if job_ids is not None else None
    target = "all failed jobs" if wanted is None else ", ".join(sorted(wanted))
    action = _remediation_start(
        actor=actor, kind=RemediationKind.REQUEUE_FAILED_JOBS, target=target
    )
    requeued, problems = [], []
    try:
        for name in QUEUE_NAMES:
            registry = FailedJobRegistry(queue=django_rq.get_queue(name))
            for job_id in registry.get_job_ids():
                if wanted is not None and job_id not in wanted:
                    continue
                try:
                    registry.requeue(job_id)
                except (NoSuchJobError, InvalidJobOperation) as error:
                    problems.append(f"{job_id}: {error}")
                else:
                    requeued.append(f"{name}:{job_id}")
    except RedisError as error:
        _remediation_finish(action, succeeded=False, result=f"Redis unreachable: {error}")
        return action
    missing = (wanted or set()) - {entry.split(":", 1)[1] for entry in requeued}
    problems += [f"{job_id}: not in a failed job registry" for job_id in sorted(missing)]
    lines = [f"requeued {len(requeued)} job(s)", *requeued, *problems]
    _remediation_finish(action, succeeded=not problems, result="\n".join(lines))
    return action


def remediation_rebuild_kpis(*, actor, site_code: str) -> RemediationAction:
    """Rebuild a site's KPI rollups from the ledger, in a worker (it can take a minute)."""
    if not Site.objects.filter(code=site_code).exists():
        raise OncallError(f"unknown site {site_code!r}")
    action = _remediation_start(actor=actor, kind=RemediationKind.REBUILD_KPIS, target=site_code)

    def enqueue() -> None:
        # After commit: the worker must find the action row.
        try:
            job = django_rq.get_queue(DEFAULT_QUEUE, commit_mode="auto").enqueue(
                "oncall.jobs.rebuild_kpis_job", action.pk
            )
        except RedisError as error:
            _remediation_finish(action, succeeded=False, result=f"Redis unreachable: {error}")
        else:
            RemediationAction.objects.filter(pk=action.pk, status=RemediationStatus.RUNNING).update(
                result=f"enqueued as job {job.id}"
            )

    transaction.on_commit(enqueue)
    return action


REPLAY_LIMIT = 1000


def remediation_replay_dead_letters(
    *, actor, reason_code: str, source_id: int | None = None
) -> RemediationAction:
    """Replay the open dead letters of one reason (and source), at most REPLAY_LIMIT a click."""
    letters = DeadLetter.objects.filter(status=DeadLetterStatus.OPEN, reason_code=reason_code)
    if source_id is not None:
        letters = letters.filter(source_id=source_id)
    ids = list(letters.order_by("pk").values_list("pk", flat=True)[: REPLAY_LIMIT + 1])
    target = f"reason {reason_code}" + (f", source #{source_id}" if source_id else "")
    if not ids:
        raise OncallError(f"no open dead letters for {target}")
    action = _remediation_start(
        actor=actor, kind=RemediationKind.REPLAY_DEAD_LETTERS, target=target
    )
    more = len(ids) > REPLAY_LIMIT
    ids = ids[:REPLAY_LIMIT]
    try:
        summary = dead_letters_replay(dead_letter_ids=ids, actor=actor)
    except DatabaseError as error:
        _remediation_finish(action, succeeded=False, result=f"replay failed: {error}")
        return action
    result = (
        f"replayed {len(ids)} dead letter(s): {summary.applied} applied, "
        f"{summary.duplicates} duplicates, {summary.held} held, "
        f"{summary.still_rejected} still rejected, {summary.skipped} skipped"
        + ("; more remain: replay again" if more else "")
    )
    _remediation_finish(action, succeeded=summary.still_rejected == 0, result=result)
    return action
