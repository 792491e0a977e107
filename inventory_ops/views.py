"""Operational endpoints: liveness and readiness probes."""

import logging

import django_rq
from django.contrib.auth.decorators import login_not_required
from django.db import DatabaseError, connection
from django.http import HttpResponsePermanentRedirect, JsonResponse
from django.templatetags.static import static
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from redis.exceptions import RedisError
from rq import Worker

logger = logging.getLogger(__name__)


@login_not_required  # the login page's browser asks for it too
@require_GET
def favicon(request):
    """Our icon, for the pages that do not link one (the Django admin's)."""
    return HttpResponsePermanentRedirect(static("img/favicon.svg"))


@require_GET
@never_cache
def healthz(request):
    """Answer 200 while the process is up; checks nothing else (that is /readyz)."""
    return JsonResponse({"status": "ok"})


@require_GET
@never_cache
def readyz(request):
    """Answer 200 when the database, Redis and at least one worker are there, else 503."""
    checks: dict[str, object] = {}
    ready = True
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except DatabaseError as error:
        checks["database"] = f"unreachable: {error}"
        ready = False
    try:
        redis = django_rq.get_connection("ingest")
        redis.ping()
        checks["redis"] = "ok"
        checks["workers"] = len(Worker.all(connection=redis))
        checks["queue_depth"] = {
            name: django_rq.get_queue(name).count for name in ("ingest", "default")
        }
        if checks["workers"] == 0:
            ready = False
    except RedisError as error:
        checks["redis"] = f"unreachable: {error}"
        ready = False
    checks["status"] = "ready" if ready else "not ready"
    return JsonResponse(checks, status=200 if ready else 503)
