"""Reads for the on-call console, runbook pages and the dashboards' alert list."""

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import django_rq
from django.db import connection
from django.db.models import Count, F, Max, Min, Q
from django.urls import reverse
from django.utils import timezone
from redis.exceptions import RedisError
from rq import Worker
from rq.job import Job
from rq.registry import FailedJobRegistry

from core.probes import database_problem, queue_counts, redis_problem
from core.queues import DEFAULT_QUEUE, QUEUE_NAMES
from ingest.heartbeats import redis_heartbeats
from ingest.models import DeadLetter, DeadLetterStatus, RejectionCode
from ingest.selectors import feeds_freshness
from kpis.restock import restock_page, running_out
from ledger.models import Movement, MovementKind, StockLevel
from oncall.measures import KPI_KEY_OF_KIND, SLO_BURN_WINDOWS, measure_shown, slo_burn_measure
from oncall.models import (
    ACTIVE_STATUSES,
    SEVERITY_RANK,
    Alert,
    AlertKind,
    AlertRule,
    DiagnosticName,
    RemediationAction,
    Runbook,
    Silence,
)
from slos.reads import slos_status

logger = logging.getLogger(__name__)

DEFAULT_SILENT_MINUTES = 15


def runbooks_by_kind() -> dict[str, Runbook]:
    """The runbook covering each alert kind (the first by title when several do)."""
    covering: dict[str, Runbook] = {}
    # A handful of rows: read them all rather than rely on JSON lookups SQLite lacks.
    for runbook in Runbook.objects.order_by("title"):
        for kind in runbook.alert_kinds:
            covering.setdefault(kind, runbook)
    return covering


def silent_feeds(alert: Alert) -> list[dict]:
    """The feeds a feed-silent alert is about: those silent for longer than its threshold now
    (with their silence in seconds), longest first."""
    threshold = float(alert.threshold)
    # A source that never delivered is not what the alert measured (it reads applied events).
    feeds = [
        feed
        for feed in feeds_freshness()
        if feed["freshness_s"] is not None and feed["freshness_s"] > threshold
    ]
    return sorted(feeds, key=lambda feed: -feed["freshness_s"])


CONCERNS_SHOWN = 10


def alert_concerns(alert: Alert) -> list[dict]:
    """What an alert is about, named, as it is now: the (site, SKU) pairs behind a negative
    stock or stockout alert (worst first), the feeds lagging or silent beyond its threshold,
    the feeds whose events wait as dead letters. Each `{"label", "url"}` (url: a SKU's lineage
    page, or None); at most CONCERNS_SHOWN, then one "and N more". Empty for kinds about no
    one thing (rates, jobs)."""
    threshold = float(alert.threshold)
    items: list[dict] = []
    more = 0
    if alert.kind in (AlertKind.NEGATIVE_STOCK, AlertKind.STOCKOUTS):
        # `available` is a property of the model: the annotation needs a name of its own.
        levels = StockLevel.objects.annotate(free=F("on_hand") - F("reserved")).select_related(
            "site", "sku"
        )
        if alert.site_id:
            levels = levels.filter(site_id=alert.site_id)
        if alert.kind == AlertKind.NEGATIVE_STOCK:
            levels = levels.filter(on_hand__lt=0).order_by("on_hand", "pk")
        else:
            levels = levels.filter(free__lte=0).order_by("free", "pk")
        shown = list(levels[: CONCERNS_SHOWN + 1])
        if len(shown) > CONCERNS_SHOWN:
            more = levels.count() - CONCERNS_SHOWN
        items = [
            {
                "label": f"{level.site.code} / {level.sku.code} {level.sku.name}: "
                f"on hand {level.on_hand:,}, available {level.available:,}",
                "url": f"{reverse('dashboards:sku', args=[level.sku.code])}?site={level.site.code}",
            }
            for level in shown[:CONCERNS_SHOWN]
        ]
    elif alert.kind in (AlertKind.FEED_SILENT, AlertKind.INGEST_LAG):
        key = "freshness_s" if alert.kind == AlertKind.FEED_SILENT else "lag_p95_s"
        what = "last event" if alert.kind == AlertKind.FEED_SILENT else "ingest lag p95"
        feeds = sorted(
            (feed for feed in feeds_freshness() if (feed[key] or 0) > threshold),
            key=lambda feed: -feed[key],
        )
        items = [
            {
                "label": f"feed {feed['source']}: {what} {measure_shown(feed[key], alert.kind)}",
                "url": None,
            }
            for feed in feeds
        ]
    elif alert.kind == AlertKind.RUNNING_OUT:
        site = alert.site.code if alert.site_id else None
        items = [
            {
                "label": f"{line.site} / {line.sku}: {float(line.days_of_cover):.1f} days of "
                f"cover, available {line.available:,}",
                "url": f"{reverse('dashboards:sku', args=[line.sku])}?site={line.site}",
            }
            for line in running_out(days=alert.threshold, site=site)
        ]
    elif alert.kind == AlertKind.DEAD_LETTERS:
        groups = (
            DeadLetter.objects.filter(status=DeadLetterStatus.OPEN)
            .order_by()
            .values("source__name")
            .annotate(count=Count("id"))
            .order_by("-count", "source__name")
        )
        items = [
            {
                "label": f"feed {group['source__name'] or 'unknown'}: {group['count']:,} open",
                "url": None,
            }
            for group in groups
        ]
    elif alert.kind in SLO_BURN_WINDOWS:
        long_window, short_window = SLO_BURN_WINDOWS[alert.kind]
        items = [
            {
                "label": f"{status.name} SLO: burn rate {status.burn_rates[long_window] or 0:.1f} "
                f"over {long_window}, {status.burn_rates[short_window] or 0:.1f} over "
                f"{short_window}; {status.budget_remaining:.0%} of its 28-day budget left",
                "url": None,
            }
            for status in slos_status()
            if slo_burn_measure(alert.kind, [status])[0] > threshold
        ]
    if len(items) > CONCERNS_SHOWN:
        more, items = more + len(items) - CONCERNS_SHOWN, items[:CONCERNS_SHOWN]
    if more:
        items.append({"label": f"and {more:,} more", "url": None})
    return items


def open_alerts(site_code: str | None = None) -> list[dict]:
    """Open and acknowledged alerts, most severe first and then newest first, as JSON-safe dicts
    with their runbook links.

    With `site_code`, the alerts of that site and the all-sites alerts; without it, every one.
    Keys: id, title, kind, kind_label, severity, severity_label, site (code or None), status,
    status_label, value,
    threshold, opened_at (ISO 8601), url (the alert's page), runbook_url and runbook_title
    (None when no runbook covers the kind), silenced_until (ISO 8601, None when no silence
    holds its notifications back now).
    """
    alerts = Alert.objects.filter(status__in=ACTIVE_STATUSES).select_related("site")
    if site_code is not None:
        alerts = alerts.filter(Q(site__isnull=True) | Q(site__code=site_code))
    covering = runbooks_by_kind()
    silences = silences_current()
    rows = []
    for alert in alerts.order_by("-opened_at", "-id"):
        runbook = covering.get(alert.kind)
        silence = silence_matching(silences, alert)
        rows.append(
            {
                "id": alert.pk,
                "title": alert.title,
                "kind": alert.kind,
                "kind_label": alert.get_kind_display(),
                "severity": alert.severity,
                "severity_label": alert.get_severity_display(),
                "site": alert.site.code if alert.site_id else None,
                "status": alert.status,
                "status_label": alert.get_status_display(),
                "value": float(alert.last_value if alert.last_value is not None else alert.value),
                "threshold": float(alert.threshold),
                "opened_at": alert.opened_at.isoformat(),
                "url": reverse("oncall:alert", args=[alert.pk]),
                "runbook_url": reverse("oncall:runbook", args=[runbook.slug]) if runbook else None,
                "runbook_title": runbook.title if runbook else None,
                "silenced_until": silence.ends_at.isoformat() if silence else None,
            }
        )
    rows.sort(key=lambda row: SEVERITY_RANK.get(row["severity"], len(SEVERITY_RANK)))
    return rows


def silences_current(now=None) -> list[Silence]:
    """Silences in force now or planned, the soonest to end first."""
    now = now or timezone.now()
    return list(
        Silence.objects.filter(ends_at__gt=now)
        .select_related("rule", "site", "created_by")
        .order_by("ends_at", "pk")
    )


def silence_matching(silences: list[Silence], alert: Alert, now=None) -> Silence | None:
    """Of `silences`, the one holding the alert's notifications back now that ends last."""
    now = now or timezone.now()
    matching = [
        silence
        for silence in silences
        if silence.starts_at <= now < silence.ends_at
        and silence.rule_id in (None, alert.rule_id)
        and silence.site_id in (None, alert.site_id)
    ]
    return max(matching, key=lambda silence: silence.ends_at, default=None)


@dataclass
class Diagnostic:
    name: str
    title: str
    rows: list = field(default_factory=list)
    error: str = ""
    summary: str = ""


def negative_stock(*, limit: int = 50, movements_each: int = 5) -> Diagnostic:
    diagnostic = Diagnostic(DiagnosticName.NEGATIVE_STOCK, DiagnosticName.NEGATIVE_STOCK.label)
    levels = list(
        StockLevel.objects.filter(on_hand__lt=0)
        .select_related("site", "sku")
        .order_by("on_hand", "pk")[:limit]
    )
    for level in levels:
        movements = list(
            Movement.objects.for_level(site_id=level.site_id, sku_id=level.sku_id)
            .select_related("user")
            .order_by("-id")[:movements_each]
        )
        diagnostic.rows.append({"level": level, "movements": movements})
    diagnostic.summary = f"{len(levels)} stock level(s) below zero" + (
        f" (first {limit})" if len(levels) == limit else ""
    )
    return diagnostic


def count_mismatches(*, hours: int = 24, limit: int = 50) -> Diagnostic:
    diagnostic = Diagnostic(DiagnosticName.COUNT_MISMATCHES, DiagnosticName.COUNT_MISMATCHES.label)
    since = timezone.now() - timedelta(hours=hours)
    diagnostic.rows = list(
        Movement.objects.filter(kind=MovementKind.COUNTED, occurred_at__gte=since)
        .exclude(on_hand_delta=0)
        .select_related("site", "sku", "user")
        .order_by("-id")[:limit]
    )
    diagnostic.summary = f"{len(diagnostic.rows)} count(s) in the last {hours} h that differed"
    return diagnostic


def failed_jobs(*, limit: int = 50) -> Diagnostic:
    diagnostic = Diagnostic(DiagnosticName.FAILED_JOBS, DiagnosticName.FAILED_JOBS.label)
    try:
        redis = django_rq.get_connection(DEFAULT_QUEUE)
        for name in QUEUE_NAMES:
            registry = FailedJobRegistry(queue=django_rq.get_queue(name))
            ids = registry.get_job_ids(0, limit - 1)
            for job in Job.fetch_many(ids, connection=redis):
                if job is None:
                    continue
                exc_info = job.latest_result().exc_string if job.latest_result() else ""
                diagnostic.rows.append(
                    {
                        "queue": name,
                        "id": job.id,
                        "func": job.func_name,
                        "ended_at": job.ended_at,
                        "exception": (exc_info or job.exc_info or "").strip()[-2000:],
                    }
                )
    except RedisError as error:
        diagnostic.error = f"Redis unreachable: {error}"
    diagnostic.summary = f"{len(diagnostic.rows)} failed job(s)"
    return diagnostic


def queues_and_workers() -> Diagnostic:
    diagnostic = Diagnostic(DiagnosticName.QUEUES, DiagnosticName.QUEUES.label)
    try:
        redis = django_rq.get_connection(DEFAULT_QUEUE)
        queues = [
            {
                "name": counts.name,
                "queued": counts.queued,
                "started": counts.started,
                "failed": counts.failed,
            }
            for counts in queue_counts()
        ]
        # Live workers from their short heartbeats (ingest/heartbeats.py): RQ's own records
        # outlive a dead worker by minutes and are gone after a Redis restart.
        states = {worker.name: worker.get_state() for worker in Worker.all(connection=redis)}
        workers = [
            {
                "name": beat.name,
                "state": states.get(beat.name, "registering"),
                "queues": ", ".join(beat.queues),
                "last_heartbeat": datetime.fromtimestamp(beat.beat_at, tz=UTC),
                "seconds_since_heartbeat": beat.age(),
            }
            for beat in redis_heartbeats(redis)
        ]
        diagnostic.rows = [{"queues": queues, "workers": workers}]
        diagnostic.summary = f"{len(workers)} worker(s); " + ", ".join(
            f"{queue['name']}: {queue['queued']} queued" for queue in queues
        )
    except RedisError as error:
        diagnostic.error = f"Redis unreachable: {error}"
    return diagnostic


def silent_sources(*, minutes: int = DEFAULT_SILENT_MINUTES) -> Diagnostic:
    diagnostic = Diagnostic(DiagnosticName.SILENT_SOURCES, DiagnosticName.SILENT_SOURCES.label)
    diagnostic.rows = [
        feed
        for feed in feeds_freshness()
        if feed["freshness_s"] is None or feed["freshness_s"] > minutes * 60
    ]
    diagnostic.summary = f"{len(diagnostic.rows)} source(s) silent for more than {minutes} min"
    return diagnostic


def dead_letters_by_reason(*, samples: int = 3) -> Diagnostic:
    """Open dead letters grouped by reason code and source, each group with a few examples."""
    diagnostic = Diagnostic(DiagnosticName.DEAD_LETTERS, DiagnosticName.DEAD_LETTERS.label)
    open_letters = DeadLetter.objects.filter(status=DeadLetterStatus.OPEN)
    groups = (
        open_letters.order_by()
        .values("reason_code", "source_id", "source__name")
        .annotate(count=Count("id"), oldest=Min("created_at"), newest=Max("created_at"))
        .order_by("-count", "reason_code", "source__name")
    )
    labels = dict(RejectionCode.choices)
    for group in groups:
        examples = list(
            open_letters.filter(reason_code=group["reason_code"], source_id=group["source_id"])
            .order_by("-id")
            .values("id", "event_id", "reason")[:samples]
        )
        diagnostic.rows.append(
            {
                **group,
                "reason_label": labels.get(group["reason_code"], group["reason_code"]),
                "examples": examples,
            }
        )
    total = sum(group["count"] for group in diagnostic.rows)
    diagnostic.summary = f"{total} open dead letter(s) in {len(diagnostic.rows)} group(s)"
    return diagnostic


def restock_suggestions(*, limit: int = 50) -> Diagnostic:
    """The pairs that need restocking, most urgent first, with what to reorder."""
    diagnostic = Diagnostic(DiagnosticName.RUNNING_OUT, DiagnosticName.RUNNING_OUT.label)
    count, diagnostic.rows = restock_page(size=limit)
    diagnostic.summary = f"{count} SKU-site(s) to reorder" + (
        f" (first {limit})" if count > limit else ""
    )
    return diagnostic


def readiness() -> Diagnostic:
    diagnostic = Diagnostic(DiagnosticName.READINESS, DiagnosticName.READINESS.label)
    database, redis = database_problem(), redis_problem()
    diagnostic.rows = [
        {"check": "database", "ok": database is None, "detail": database or connection.vendor},
        {"check": "redis", "ok": redis is None, "detail": redis or "PONG"},
    ]
    failing = [row["check"] for row in diagnostic.rows if not row["ok"]]
    diagnostic.summary = "all reachable" if not failing else f"unreachable: {', '.join(failing)}"
    return diagnostic


DIAGNOSTICS = {
    DiagnosticName.NEGATIVE_STOCK: negative_stock,
    DiagnosticName.COUNT_MISMATCHES: count_mismatches,
    DiagnosticName.FAILED_JOBS: failed_jobs,
    DiagnosticName.QUEUES: queues_and_workers,
    DiagnosticName.SILENT_SOURCES: silent_sources,
    DiagnosticName.DEAD_LETTERS: dead_letters_by_reason,
    DiagnosticName.READINESS: readiness,
    DiagnosticName.RUNNING_OUT: restock_suggestions,
}
CONSOLE_DIAGNOSTICS = [
    DiagnosticName.NEGATIVE_STOCK,
    DiagnosticName.FAILED_JOBS,
    DiagnosticName.SILENT_SOURCES,
    DiagnosticName.DEAD_LETTERS,
    DiagnosticName.QUEUES,
]


def diagnostics_run(names, *, silent_minutes: int = DEFAULT_SILENT_MINUTES) -> list[Diagnostic]:
    """Run the named diagnostics now, in the order given."""
    results = []
    for name in names:
        if name == DiagnosticName.SILENT_SOURCES:
            results.append(silent_sources(minutes=silent_minutes))
        elif name in DIAGNOSTICS:
            results.append(DIAGNOSTICS[name]())
    return results


def remediations_recent(*, limit: int = 20) -> list[RemediationAction]:
    return list(RemediationAction.objects.select_related("actor")[:limit])


def kpi_alert_rules(*, site_code: str | None) -> list[AlertRule]:
    """The enabled rules on a KPI a dashboard tile shows, for exactly this scope: the site's
    own rules, or (None) the rules on all sites."""
    rules = AlertRule.objects.filter(enabled=True, kind__in=list(KPI_KEY_OF_KIND))
    if site_code:
        return list(rules.filter(site__code=site_code))
    return list(rules.filter(site__isnull=True))
