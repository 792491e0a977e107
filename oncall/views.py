"""The on-call console, alert pages and runbook pages. Permissions are checked here (403)."""

from datetime import timedelta

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from ledger.models import Site
from oncall.exceptions import NoteRequired, OncallError, OncallNotAllowed, StillBreaching
from oncall.forms import SilenceForm
from oncall.models import Alert, AlertKind, AlertStatus, Runbook, RunbookVersion
from oncall.runbooks import markdown_render_safe
from oncall.schedule import alerts_schedule_ensure
from oncall.selectors import (
    CONSOLE_DIAGNOSTICS,
    DEFAULT_SILENT_MINUTES,
    alert_concerns,
    diagnostics_run,
    open_alerts,
    remediations_recent,
    runbooks_by_kind,
    silence_matching,
    silences_current,
    silent_feeds,
)
from oncall.services import (
    CHANGE_ALERT,
    RUN_REMEDIATION,
    alert_transition,
    remediation_rebuild_kpis,
    remediation_replay_dead_letters,
    remediation_requeue_failed_jobs,
)
from oncall.silences import ADD_SILENCE, CHANGE_SILENCE, silence_create, silence_end
from slos.reads import slo_panel_rows

VIEW_ALERT = "oncall.view_alert"
VIEW_RUNBOOK = "oncall.view_runbook"
DIAGNOSTICS_REFRESH_SECONDS = 10


def _require(request, permission: str) -> None:
    if not request.user.has_perm(permission):
        raise PermissionDenied


def _silent_minutes(request) -> int:
    try:
        return max(1, min(7 * 24 * 60, int(request.GET.get("silent_minutes", ""))))
    except ValueError:
        return DEFAULT_SILENT_MINUTES


def _safe_next(request) -> str:
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return target
    return ""


def _back(request, fallback: str):
    return redirect(_safe_next(request) or fallback)


def _common(request) -> dict:
    return {
        "can_remediate": request.user.has_perm(RUN_REMEDIATION),
        "can_transition": request.user.has_perm(CHANGE_ALERT),
        "can_silence": request.user.has_perm(ADD_SILENCE),
        "can_end_silence": request.user.has_perm(CHANGE_SILENCE),
        "sites": Site.objects.only("code"),
        "refresh_seconds": DIAGNOSTICS_REFRESH_SECONDS,
        "silent_minutes": _silent_minutes(request),
    }


@require_GET
def console(request):
    _require(request, VIEW_ALERT)
    alerts_schedule_ensure()  # one Redis GET when the chain is alive
    context = {
        **_common(request),
        "alerts": open_alerts(),
        "diagnostics": diagnostics_run(
            CONSOLE_DIAGNOSTICS, silent_minutes=_silent_minutes(request)
        ),
        "remediations": remediations_recent(),
        "silences": silences_current(),
        "silence_form": SilenceForm(),
        "slo_rows": slo_panel_rows(),
    }
    template = "oncall/console.html"
    if request.htmx and request.GET.get("partial") == "diagnostics":
        template += "#live"
    return render(request, template, context)


@require_GET
def alert_detail(request, pk: int):
    _require(request, VIEW_ALERT)
    return _alert_page(request, pk)


def _alert_page(
    request,
    pk: int,
    *,
    note_error: str = "",
    note: str = "",
    resolve_error: str = "",
    resolve_note: str = "",
    status: int = 200,
):
    alert = get_object_or_404(Alert.objects.select_related("site", "rule"), pk=pk)
    transitions = alert.transitions.select_related("by")
    context = {
        **_common(request),
        "alert": alert,
        "transitions": transitions,
        # Who was paged, and whether it reached them (the admin has the whole log).
        "deliveries": alert.deliveries.select_related("channel").order_by("created_at", "pk"),
        "runbook": runbooks_by_kind().get(alert.kind),
        # What the alert is about, named: a silent feed's name, not only "a feed".
        "silent_feeds": silent_feeds(alert) if alert.kind == AlertKind.FEED_SILENT else [],
        # The SKUs, lagging feeds or dead-letter sources behind the value, while it lasts.
        "concerns": alert_concerns(alert)
        if alert.is_active and alert.kind != AlertKind.FEED_SILENT
        else [],
        "silence": silence_matching(silences_current(), alert) if alert.is_active else None,
        "silence_form": SilenceForm(
            initial={"rule": alert.rule_id, "site": alert.site.code if alert.site_id else None}
        ),
        "note_error": note_error,
        "note": note,
        "resolve_error": resolve_error,
        "resolve_note": resolve_note,
        # Back to where the form was posted from (the console, a runbook) once it succeeds.
        "next_url": _safe_next(request) or request.get_full_path(),
    }
    return render(request, "oncall/alert.html", context, status=status)


TRANSITIONS = {"acknowledge": AlertStatus.ACKNOWLEDGED, "resolve": AlertStatus.RESOLVED}


@require_POST
def alert_transition_view(request, pk: int, action: str):
    _require(request, CHANGE_ALERT)
    if action not in TRANSITIONS:
        raise PermissionDenied
    try:
        alert = alert_transition(
            alert_id=pk,
            to_status=TRANSITIONS[action],
            user=request.user,
            note=request.POST.get("note", ""),
        )
    except OncallNotAllowed:
        raise PermissionDenied from None
    except NoteRequired as error:
        # The alert's page, the form kept, the error at the note field.
        note = request.POST.get("note", "")
        return _alert_page(request, pk, note_error=str(error), note=note, status=400)
    except StillBreaching as error:
        # The alert's page, wherever Resolve was clicked: the refusal at the resolve form and
        # the silence form beside it, which is what stops the paging.
        note = request.POST.get("note", "")
        return _alert_page(request, pk, resolve_error=str(error), resolve_note=note, status=409)
    except OncallError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, f"Alert #{alert.pk} {alert.get_status_display().lower()}.")
    return _back(request, "oncall:console")


@require_POST
def silence_create_view(request):
    _require(request, ADD_SILENCE)
    form = SilenceForm(request.POST)
    if not form.is_valid():
        problems = [error for errors in form.errors.values() for error in errors]
        messages.error(request, "Not silenced: " + " ".join(problems))
        return _back(request, "oncall:console")
    rule, site = form.cleaned_data["rule"], form.cleaned_data["site"]
    try:
        silence = silence_create(
            user=request.user,
            rule_id=rule.pk if rule else None,
            site_id=site.pk if site else None,
            ends_at=timezone.now() + timedelta(minutes=form.cleaned_data["minutes"]),
            reason=form.cleaned_data["reason"],
        )
    except OncallNotAllowed:
        raise PermissionDenied from None
    except OncallError as error:
        messages.error(request, f"Not silenced: {error}")
    else:
        messages.success(
            request,
            f"Silenced {silence.matcher_label} until {silence.ends_at:%Y-%m-%d %H:%M} UTC: "
            "alerts still show, nothing is sent until then.",
        )
    return _back(request, "oncall:console")


@require_POST
def silence_end_view(request, pk: int):
    _require(request, CHANGE_SILENCE)
    try:
        silence = silence_end(silence_id=pk, user=request.user)
    except OncallNotAllowed:
        raise PermissionDenied from None
    except OncallError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, f"Silence of {silence.matcher_label} ended.")
    return _back(request, "oncall:console")


@require_POST
def remediation_view(request, kind: str):
    _require(request, RUN_REMEDIATION)
    try:
        if kind == "requeue":
            ids = [job_id for job_id in request.POST.getlist("job_id") if job_id]
            action = remediation_requeue_failed_jobs(actor=request.user, job_ids=ids or None)
        elif kind == "replay":
            source = request.POST.get("source", "")
            action = remediation_replay_dead_letters(
                actor=request.user,
                reason_code=request.POST.get("reason_code", ""),
                source_id=int(source) if source.isdigit() else None,
            )
        elif kind == "rebuild-kpis":
            action = remediation_rebuild_kpis(
                actor=request.user, site_code=request.POST.get("site", "")
            )
        else:
            raise PermissionDenied
    except OncallNotAllowed:
        raise PermissionDenied from None
    except OncallError as error:
        messages.error(request, str(error))
    else:
        level = messages.ERROR if action.status == "failed" else messages.SUCCESS
        messages.add_message(
            request, level, f"{action.get_kind_display()}: {action.status}. {action.result}"
        )
    return _back(request, "oncall:console")


@require_GET
def runbook_list(request):
    _require(request, VIEW_RUNBOOK)
    return render(request, "oncall/runbooks.html", {"runbooks": Runbook.objects.all()})


@require_GET
def runbook_detail(request, slug: str):
    _require(request, VIEW_RUNBOOK)
    runbook = get_object_or_404(Runbook, slug=slug)
    alerts = [alert for alert in open_alerts() if alert["kind"] in runbook.alert_kinds]
    context = {
        **_common(request),
        "runbook": runbook,
        "body": markdown_render_safe(runbook.body),
        "alerts": alerts,
        "diagnostics": diagnostics_run(
            runbook.diagnostics, silent_minutes=_silent_minutes(request)
        ),
        "versions": runbook.versions.select_related("edited_by")[:20],
    }
    template = "oncall/runbook.html"
    if request.htmx and request.GET.get("partial") == "diagnostics":
        template += "#live"
    return render(request, template, context)


@require_GET
def runbook_version(request, slug: str, number: int):
    _require(request, VIEW_RUNBOOK)
    version = get_object_or_404(
        RunbookVersion.objects.select_related("runbook", "edited_by"),
        runbook__slug=slug,
        number=number,
    )
    return render(
        request,
        "oncall/runbook_version.html",
        {"version": version, "body": markdown_render_safe(version.body)},
    )
