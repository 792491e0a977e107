"""Operational endpoints: liveness and readiness probes."""

import logging
import sys

import django_rq
from django.contrib.auth.decorators import login_not_required
from django.db import DatabaseError
from django.http import HttpResponseRedirect, JsonResponse
from django.templatetags.static import static
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from django.views.defaults import bad_request as default_bad_request
from django.views.defaults import server_error as default_server_error
from redis.exceptions import RedisError

from core.outages import OUTAGE_ERRORS, outage_response
from core.probes import database_problem, queue_counts, redis_problem
from core.queues import DEFAULT_QUEUE
from ingest.heartbeats import redis_heartbeats

logger = logging.getLogger(__name__)

# Who sees /readyz details: on-call (the permission to run remediations).
ON_CALL_PERMISSION = "inventory_ops.run_remediation"


@login_not_required  # the login page's browser asks for it too
@require_GET
def favicon(request):
    """Our icon, for the pages that do not link one (the Django admin's).

    A temporary redirect: the target's name carries its content hash, which changes with a
    deploy, and browsers would keep a permanent redirect to a name that no longer exists.
    """
    return HttpResponseRedirect(static("img/favicon.svg"))


@require_GET
@never_cache
def healthz(request):
    """Answer 200 while the process is up; checks nothing else (that is /readyz)."""
    return JsonResponse({"status": "ok"})


def _sees_details(request) -> bool:
    """On-call people (who may run remediations) see what is wrong; anyone else only whether.

    `request.user` is there (the authentication middleware sets it for every request); reading
    it reads the session and the user from the database.
    """
    try:
        return request.user.is_authenticated and request.user.has_perm(ON_CALL_PERMISSION)
    except DatabaseError:  # the session or the user cannot be read: no details
        return False


@require_GET
@never_cache
def readyz(request):
    """Answer 200 when this web process can serve (its database and Redis answer), else 503.

    Workers are not its business: a web process without workers still serves every page and
    stores every batch (they wait in the database for a worker). Worker liveness is checked on
    its own (`manage.py worker_alive`). Anyone gets `{"status": ...}`; logged-in on-call users
    also get each check's error, the live workers and the queue depths.
    """
    database, redis = database_problem(), redis_problem()
    ready = database is None and redis is None
    body: dict[str, object] = {"status": "ready" if ready else "not ready"}
    # Without the database nobody can be recognised (sessions and users live there).
    if database is None and _sees_details(request):
        body["database"] = "ok" if database is None else f"unreachable: {database}"
        body["redis"] = "ok" if redis is None else f"unreachable: {redis}"
        if redis is None:
            body.update(_worker_details())
    return JsonResponse(body, status=200 if ready else 503)


def _worker_details() -> dict[str, object]:
    try:
        beats = redis_heartbeats(django_rq.get_connection(DEFAULT_QUEUE))
        depth = {counts.name: counts.queued for counts in queue_counts()}
    except RedisError as error:  # went away between the checks
        return {"workers": f"unknown: {error}"}
    workers = [{**beat.as_dict(), "seconds_ago": round(beat.age(), 1)} for beat in beats]
    return {"workers": workers, "queue_depth": depth}


def server_error(request, *args, **kwargs):
    """The 500 handler: an outage (the database or Redis away) is a 503, anything else a 500."""
    error = sys.exc_info()[1]
    if isinstance(error, OUTAGE_ERRORS):
        return outage_response(request, error)
    return default_server_error(request, *args, **kwargs)


def bad_request(request, exception, *args, **kwargs):
    """The 400 handler: Django reports a session it could not save (the session middleware's
    write, after the view) as "session interrupted", a 400, even when the database was away;
    that is an outage, a 503. Anything else is Django's 400."""
    outage = _outage_behind(exception)
    if outage is not None:
        return outage_response(request, outage)
    return default_bad_request(request, exception, *args, **kwargs)


def _outage_behind(error: BaseException | None) -> BaseException | None:
    """The outage error this error was raised while handling, if any (its chain of causes)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OUTAGE_ERRORS):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None
