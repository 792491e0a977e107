"""A request id on every log line of a request, and on its response.

The id comes from the `X-Request-ID` header when the proxy in front sends a usable one (so the
proxy's access log and ours share it), else a new one; the response carries it back in the same
header. `RequestIdFilter`, on the log handler, puts it on every record as `request_id` (None
outside a request: workers, commands).
"""

import re
import uuid
from contextvars import ContextVar

from asgiref.sync import markcoroutinefunction

HEADER = "X-Request-ID"
USABLE = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)


def _request_id_of(request) -> str:
    sent = request.headers.get(HEADER, "")
    return sent if USABLE.fullmatch(sent) else uuid.uuid4().hex


class RequestIdMiddleware:
    """First in MIDDLEWARE, and async only: a middleware that can run either way runs the way
    of the one below it, so behind any sync-only one it would run in a thread of its own, and
    the id would be gone before Django logs the response (after the middleware returns). Async,
    it runs in the request's own task, whose context lasts as long as the request: everything
    logged about the request sees the id, Django's 4xx/5xx lines and the sync code run in
    threads (they copy the task's context) included."""

    sync_capable = False
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        markcoroutinefunction(self)

    async def __call__(self, request):
        request_id.set(_request_id_of(request))
        response = await self.get_response(request)
        response[HEADER] = request_id.get()
        return response


class RequestIdFilter:
    """Give every log record the current request's id (None outside a request)."""

    def filter(self, record) -> bool:
        record.request_id = request_id.get()
        return True
