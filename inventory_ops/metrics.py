"""`/metrics` in the Prometheus text format, written by prometheus-client: ingest counters, lag,
queue depth, job durations, workers, dead letters, open alerts by rule, and this web process's
WebSocket clients and HTTP requests (count and latency by route, method and status).

What the database and Redis hold is read when scraped, at a cost that does not grow with the
history: the event counters are totals the database keeps (ingest.models.SourceEventTotals),
the lag comes from the last 15 minutes' batches (an index on finished_at), the rest are counts
of what is open or queued now. Every web process answers the same numbers for those; the HTTP
request metrics and WebSocket clients are the answering process's own (scrape each process, as
Prometheus's Kubernetes pod discovery does, to see them all).

The numbers name the feed partners and their volumes: a scraper sends
`Authorization: Bearer <METRICS_TOKEN>`; a person logged in as on-call may look too.
"""

import hmac
import time

import django_rq
from django.conf import settings
from django.db import DatabaseError
from django.db.models import Count
from django.http import HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from redis.exceptions import RedisError
from rq import Worker

from core.jobtimes import job_durations
from core.probes import queue_counts
from core.queues import INGEST_QUEUE
from core.roles import ON_CALL
from dashboards.live import websocket_clients_count
from ingest.models import DeadLetter, DeadLetterStatus, FeedSource
from ingest.selectors import feeds_freshness, sources_totals
from oncall.models import ACTIVE_STATUSES, Alert

# The exposition format every Prometheus reads (prometheus-client's own default may move on).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# No `_created` series beside every counter and histogram: they double the series for a time
# Prometheus does not need (it sees a restart as a counter going down).
disable_created_metrics()
# This process's request metrics, kept in memory from its start.
PROCESS_REGISTRY = CollectorRegistry(auto_describe=True)
HTTP_REQUESTS = Counter(
    "inventory_ops_http_requests",
    "HTTP requests answered by this web process.",
    ["route", "method", "status"],
    registry=PROCESS_REGISTRY,
)
HTTP_LATENCY = Histogram(
    "inventory_ops_http_request_duration_seconds",
    "Time to answer an HTTP request in this web process.",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=PROCESS_REGISTRY,
)


class RequestMetricsMiddleware:
    """Counts and times every request by its URL pattern (never the raw path: one series per
    route, whatever ids the paths carry)."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        match = request.resolver_match
        route = match.route if match is not None else "unmatched"
        HTTP_REQUESTS.labels(route, request.method, str(response.status_code)).inc()
        HTTP_LATENCY.labels(route, request.method).observe(time.perf_counter() - started)
        return response


def _counter(name: str, help_text: str, labels: list[str], samples) -> CounterMetricFamily:
    family = CounterMetricFamily(name, help_text, labels=labels)
    for values, value in samples:
        family.add_metric(values, value)
    return family


def _gauge(name: str, help_text: str, labels: list[str], samples) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, help_text, labels=labels)
    for values, value in samples:
        if value is not None:
            family.add_metric(values, value)
    return family


def _ingest_metrics() -> list:
    names = dict(FeedSource.objects.values_list("pk", "name"))
    totals = sorted(sources_totals().items())
    families = [
        _counter(
            f"inventory_ops_ingest_events_{outcome}",
            f"Events {outcome} per feed source since the start.",
            ["source"],
            [([names[pk]], row[outcome]) for pk, row in totals],
        )
        for outcome in ("accepted", "applied", "duplicates", "rejected")
    ]
    families.append(
        _gauge(
            "inventory_ops_ingest_events_pending",
            "Events accepted but not yet applied, duplicate or rejected (held or queued).",
            ["source"],
            [([names[pk]], row["pending"]) for pk, row in totals],
        )
    )
    freshness = feeds_freshness()
    families.append(
        _gauge(
            "inventory_ops_feed_freshness_seconds",
            "Now minus the newest event time applied, per source.",
            ["source"],
            [([row["source"]], row["freshness_s"]) for row in freshness],
        )
    )
    families.append(
        _gauge(
            "inventory_ops_ingest_lag_p95_seconds",
            "95th percentile of applied time minus received time, recent batches, per source.",
            ["source"],
            [([row["source"]], row["lag_p95_s"]) for row in freshness],
        )
    )
    families.append(
        _gauge(
            "inventory_ops_dead_letters_open",
            "Rejected events waiting to be replayed or discarded.",
            [],
            [([], DeadLetter.objects.filter(status=DeadLetterStatus.OPEN).count())],
        )
    )
    open_by_rule = (
        Alert.objects.filter(status__in=ACTIVE_STATUSES)
        .values_list("rule__name")
        .annotate(count=Count("pk"))
        .order_by("rule__name")
    )
    families.append(
        _gauge(
            "inventory_ops_alerts_open",
            'Alerts open or acknowledged, per rule (rule="" for alerts of a deleted rule).',
            ["rule"],
            [([rule or ""], count) for rule, count in open_by_rule],
        )
    )
    return families


def _queue_metrics() -> list:
    connection = django_rq.get_connection(INGEST_QUEUE)
    names, depth, started, failed = [], [], [], []
    for counts in queue_counts():
        names.append(counts.name)
        depth.append(([counts.name], counts.queued))
        started.append(([counts.name], counts.started))
        failed.append(([counts.name], counts.failed))
    durations = HistogramMetricFamily(
        "inventory_ops_job_duration_seconds",
        "Time the workers took per job, by queue, since Redis started.",
        labels=["queue"],
    )
    for queue, (buckets, total) in job_durations(connection, names).items():
        durations.add_metric([queue], buckets=buckets, sum_value=total)
    return [
        durations,
        _gauge("inventory_ops_queue_depth", "Jobs waiting in each RQ queue.", ["queue"], depth),
        _gauge("inventory_ops_queue_started", "Jobs being worked on.", ["queue"], started),
        _gauge("inventory_ops_queue_failed", "Jobs in the failed registry.", ["queue"], failed),
        _gauge(
            "inventory_ops_workers", "RQ workers alive.", [], [([], len(Worker.all(connection)))]
        ),
    ]


class _ScrapeCollector:
    """What the database and Redis say now, and which of them answered."""

    def collect(self):
        up = {"database": 1, "redis": 1}
        try:
            yield from _ingest_metrics()
        except DatabaseError:
            up["database"] = 0
        try:
            yield from _queue_metrics()
        except RedisError:
            up["redis"] = 0
        yield _gauge(
            "inventory_ops_websocket_clients",
            "Dashboard WebSockets open in this web process.",
            [],
            [([], websocket_clients_count())],
        )
        yield _gauge(
            "inventory_ops_dependency_up",
            "1 when the dependency answered this scrape.",
            ["dependency"],
            [([name], value) for name, value in up.items()],
        )


def _bearer_token_valid(request) -> bool:
    expected = settings.METRICS_TOKEN
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if not expected or scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(token.strip().encode(), expected.encode())


def _refusal(request) -> HttpResponse | None:
    """401 without a valid token or login, 403 for a logged-in user who is not on-call."""
    if _bearer_token_valid(request):
        return None
    user = request.user
    if user.is_authenticated:
        if user.is_superuser or user.groups.filter(name=ON_CALL).exists():
            return None
        return HttpResponse(
            "Forbidden: /metrics is for the on-call role or a scraper with the metrics token.\n",
            status=403,
            content_type="text/plain; charset=utf-8",
        )
    response = HttpResponse(
        "Unauthorized: send 'Authorization: Bearer <METRICS_TOKEN>' "
        "(or log in as an on-call user).\n",
        status=401,
        content_type="text/plain; charset=utf-8",
    )
    response["WWW-Authenticate"] = 'Bearer realm="metrics"'
    return response


@require_GET
@never_cache
def metrics(request):
    refusal = _refusal(request)
    if refusal is not None:
        return refusal
    scrape = CollectorRegistry(auto_describe=False)
    scrape.register(_ScrapeCollector())
    text = generate_latest(scrape) + generate_latest(PROCESS_REGISTRY)
    return HttpResponse(text, content_type=CONTENT_TYPE)
