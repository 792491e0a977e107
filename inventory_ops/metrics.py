"""`/metrics` in the Prometheus text format: ingest counters, lag, queue depth, workers and
the WebSocket clients of the answering web process.

Each value is read when scraped (a handful of aggregate queries and Redis calls); nothing is
kept in process memory, so every web process answers the same numbers.

The numbers name the feed partners and their volumes: a scraper sends
`Authorization: Bearer <METRICS_TOKEN>`; a person logged in as on-call may look too.
"""

import hmac

import django_rq
from django.conf import settings
from django.db import DatabaseError
from django.http import HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from redis.exceptions import RedisError
from rq import Worker

from core.probes import queue_counts
from core.queues import INGEST_QUEUE
from core.roles import ON_CALL
from dashboards.live import websocket_clients_count
from ingest.models import DeadLetter, DeadLetterStatus, FeedSource
from ingest.selectors import feeds_freshness, sources_totals


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class _Exposition:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def metric(self, name: str, kind: str, help_text: str, samples) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            if value is None:
                continue
            label_text = ",".join(f'{key}="{_escape(str(val))}"' for key, val in labels.items())
            self.lines.append(
                f"{name}{{{label_text}}} {value}" if label_text else f"{name} {value}"
            )

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _ingest_metrics(out: _Exposition) -> None:
    names = dict(FeedSource.objects.values_list("pk", "name"))
    totals = sources_totals()
    for outcome in ("accepted", "applied", "duplicates", "rejected"):
        out.metric(
            f"inventory_ops_ingest_events_{outcome}_total",
            "counter",
            f"Events {outcome} per feed source since the start.",
            [({"source": names[pk]}, row[outcome]) for pk, row in sorted(totals.items())],
        )
    out.metric(
        "inventory_ops_ingest_events_pending",
        "gauge",
        "Events accepted but not yet applied, duplicate or rejected (held or queued).",
        [({"source": names[pk]}, row["pending"]) for pk, row in sorted(totals.items())],
    )
    freshness = feeds_freshness()
    out.metric(
        "inventory_ops_feed_freshness_seconds",
        "gauge",
        "Now minus the newest event time applied, per source.",
        [({"source": row["source"]}, row["freshness_s"]) for row in freshness],
    )
    out.metric(
        "inventory_ops_ingest_lag_p95_seconds",
        "gauge",
        "95th percentile of applied time minus received time, recent batches, per source.",
        [({"source": row["source"]}, row["lag_p95_s"]) for row in freshness],
    )
    out.metric(
        "inventory_ops_dead_letters_open",
        "gauge",
        "Rejected events waiting to be replayed or discarded.",
        [({}, DeadLetter.objects.filter(status=DeadLetterStatus.OPEN).count())],
    )


def _queue_metrics(out: _Exposition) -> None:
    connection = django_rq.get_connection(INGEST_QUEUE)
    depth, started, failed = [], [], []
    for counts in queue_counts():
        depth.append(({"queue": counts.name}, counts.queued))
        started.append(({"queue": counts.name}, counts.started))
        failed.append(({"queue": counts.name}, counts.failed))
    out.metric("inventory_ops_queue_depth", "gauge", "Jobs waiting in each RQ queue.", depth)
    out.metric("inventory_ops_queue_started", "gauge", "Jobs being worked on.", started)
    out.metric("inventory_ops_queue_failed", "gauge", "Jobs in the failed registry.", failed)
    out.metric(
        "inventory_ops_workers", "gauge", "RQ workers alive.", [({}, len(Worker.all(connection)))]
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
    out = _Exposition()
    up = {"database": 1, "redis": 1}
    try:
        _ingest_metrics(out)
    except DatabaseError:
        up["database"] = 0
    try:
        _queue_metrics(out)
    except RedisError:
        up["redis"] = 0
    out.metric(
        "inventory_ops_websocket_clients",
        "gauge",
        "Dashboard WebSockets open in this web process.",
        [({}, websocket_clients_count())],
    )
    out.metric(
        "inventory_ops_dependency_up",
        "gauge",
        "1 when the dependency answered this scrape.",
        [({"dependency": name}, value) for name, value in up.items()],
    )
    return HttpResponse(out.text(), content_type="text/plain; version=0.0.4; charset=utf-8")
