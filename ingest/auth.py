"""Feed-token authentication for the API (`Authorization: Bearer <token>`).

Other routers may use `FeedTokenAuth()` for read access with a feed token (SPEC.md: the KPI and
stock endpoints accept one). Every failure is an HttpError, which the API answers in JSON.
"""

import hashlib
import hmac

from django.db import DatabaseError
from django.http import HttpRequest
from ninja.errors import HttpError
from ninja.security import HttpBearer

from ingest.models import FeedSource
from ingest.services import feed_source_by_token


class FeedTokenAuth(HttpBearer):
    """Resolve the bearer token to an active FeedSource, or refuse with a reason."""

    def __call__(self, request: HttpRequest) -> FeedSource:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if not header:
            raise HttpError(
                401, "missing Authorization header: send 'Authorization: Bearer <token>'"
            )
        if scheme.lower() != "bearer" or not token.strip():
            raise HttpError(401, "the Authorization header must be 'Bearer <token>'")
        return self.authenticate(request, token.strip())

    def authenticate(self, request: HttpRequest, token: str) -> FeedSource:
        try:
            source = feed_source_by_token(token=token)
        except DatabaseError:
            raise HttpError(503, "the database is unreachable: retry shortly") from None
        if source is None:
            raise HttpError(
                401, "unknown or rotated token: ask the admin for this feed source's current token"
            )
        if not source.is_active:
            raise HttpError(403, f"feed source {source.name!r} is disabled")
        return source


def signature_problem(*, source: FeedSource, body: bytes, header: str | None) -> str | None:
    """Check X-Signature (`sha256=<hex HMAC-SHA256 of the body>`); name what is wrong, if any.

    A source that does not require a signature is still checked when one is sent.
    """
    if not header:
        if source.require_signature:
            return "this source requires X-Signature: sha256=<hex HMAC-SHA256 of the body>"
        return None
    algorithm, _, received = header.strip().partition("=")
    if algorithm.lower() != "sha256" or not received:
        return "X-Signature must be 'sha256=<hex HMAC-SHA256 of the raw body>'"
    expected = hmac.new(source.signing_secret.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, received.strip().lower()):
        return "X-Signature does not match the body: sign the exact bytes sent with the secret"
    return None
