"""What every entry point answers while PostgreSQL or Redis is away: 503, never 500.

Pages get a plain page (no database needed to render it) that reloads itself; the JSON API
gets JSON; the dashboard WebSocket is closed with CLOSE_UNAVAILABLE, which the page shows as
"server unavailable, retrying" before it reconnects. Everything recovers by itself when the
dependency is back: nothing here keeps state.
"""

import logging

from django.db import InterfaceError, OperationalError
from django.http import HttpResponse, JsonResponse
from django.template import loader
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

logger = logging.getLogger(__name__)

# Errors that mean "a dependency is away or overloaded", not "a bug": the database cannot be
# reached, dropped the connection, the pool had none to give in time, a lock or statement timed
# out; Redis refused, dropped or did not answer in time.
OUTAGE_ERRORS = (OperationalError, InterfaceError, RedisConnectionError, RedisTimeoutError)

RETRY_AFTER_SECONDS = 5
# Application close code (4000-4999) of a dashboard socket closed because of an outage.
CLOSE_UNAVAILABLE = 4503
UNAVAILABLE_MESSAGE = "server unavailable, retrying"


def outage_log(request_path: str, error: Exception) -> None:
    logger.warning("503 for %s: %s: %s", request_path, type(error).__name__, error)


def outage_json_response() -> JsonResponse:
    response = JsonResponse(
        {
            "detail": "the service is briefly unavailable (database or Redis unreachable); "
            f"nothing was changed: retry in {RETRY_AFTER_SECONDS} s",
            "errors": [],
        },
        status=503,
    )
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def outage_page_response() -> HttpResponse:
    # Rendered without the request: context processors would read the session and the user,
    # which live in the database that is away.
    html = loader.get_template("503.html").render({"retry_seconds": RETRY_AFTER_SECONDS})
    response = HttpResponse(html, status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def wants_json(request) -> bool:
    accept = request.headers.get("Accept", "")
    return request.path_info.startswith("/api/") or (
        "application/json" in accept and "text/html" not in accept
    )


def outage_response(request, error: Exception) -> HttpResponse:
    outage_log(request.path_info, error)
    return outage_json_response() if wants_json(request) else outage_page_response()
