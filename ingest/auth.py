"""Feed-token authentication for the API (`Authorization: Bearer <token>`), and the request
signature (`X-Signature`, docs/signing.md).

`FeedTokenAuth` is the one check of a feed token: the feed API uses it, and the KPI and stock
read API (`dashboards/api.py`) uses `FeedTokenReadAuth`, the same check without noting the
token's use. Every failure is an HttpError, which the API answers in JSON.
"""

import hashlib
import hmac
import logging
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest
from ninja.errors import HttpError
from ninja.security import HttpBearer
from redis.exceptions import RedisError

from ingest.models import FeedSource
from ingest.receiving import ingest_queue
from ingest.sources import feed_source_by_token, feed_token_holder

logger = logging.getLogger(__name__)

SIGNATURE_FORMAT = "X-Signature: t=<unix seconds>,sha256=<hex HMAC-SHA256 of '<t>.<raw body>'>"


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
            source = self.source_find(token)
        except DatabaseError:
            raise HttpError(503, "the database is unreachable: retry shortly") from None
        if source is None:
            raise HttpError(
                401,
                "unknown or rotated token (a rotated token works only during its grace period): "
                "ask the admin for this feed source's current token",
            )
        if not source.is_active:
            raise HttpError(403, f"feed source {source.name!r} is disabled")
        return source

    @staticmethod
    def source_find(token: str):
        return feed_source_by_token(token=token)


class FeedTokenReadAuth(FeedTokenAuth):
    """Read access with a feed token: the same rules and refusals, answered from one narrow row
    (`feed_token_holder`: the source's name and state), and the token's use not noted."""

    @staticmethod
    def source_find(token: str):
        return feed_token_holder(token=token)


@dataclass(frozen=True)
class SignatureVerdict:
    """What the X-Signature check found: a problem to answer 401 with, or a signature that
    must not be accepted again (`replay_key`, None for unsigned requests)."""

    problem: str | None = None
    replay_key: str | None = None


def _signed_fields(header: str) -> dict[str, str]:
    fields = {}
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        fields[name.strip().lower()] = value.strip()
    return fields


def _hmac_hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_check(
    *, source: FeedSource, body: bytes, header: str | None, now: float | None = None
) -> SignatureVerdict:
    """Check X-Signature, timestamped (`t=...,sha256=...`) or, for sources that accept it (the
    default), the body-only `sha256=<hex>`. A source that does not require a signature is still
    checked when one is sent."""
    if not header:
        if source.require_signature:
            return SignatureVerdict(f"this source requires {SIGNATURE_FORMAT}")
        return SignatureVerdict()
    fields = _signed_fields(header)
    received = fields.get("sha256", "").lower()
    if not received or set(fields) - {"t", "sha256"}:
        return SignatureVerdict(f"X-Signature must be '{SIGNATURE_FORMAT.split(': ', 1)[1]}'")
    if "t" not in fields:
        if not source.legacy_body_signature:
            return SignatureVerdict(
                "X-Signature without a timestamp is refused for this source: sign "
                f"'<t>.<raw body>' and send {SIGNATURE_FORMAT}"
            )
        expected = _hmac_hex(source.signing_secret, body)
        if not hmac.compare_digest(expected, received):
            return SignatureVerdict(
                "X-Signature does not match the body: sign the exact bytes sent with the secret"
            )
        return SignatureVerdict(replay_key=f"ingest:signature:{source.pk}:body:{received}")
    timestamp = fields["t"]
    if not timestamp.isdigit():
        return SignatureVerdict("X-Signature t= must be the signing time in whole Unix seconds")
    now = time.time() if now is None else now
    tolerance = settings.INGEST_SIGNATURE_TOLERANCE_SECONDS
    if abs(now - int(timestamp)) > tolerance:
        return SignatureVerdict(
            f"X-Signature t={timestamp} is more than {tolerance} s from the server's clock "
            f"({int(now)}): sign each request when sending it, and keep the clock in sync"
        )
    expected = _hmac_hex(source.signing_secret, timestamp.encode() + b"." + body)
    if not hmac.compare_digest(expected, received):
        return SignatureVerdict(
            "X-Signature does not match: sign '<t>.<raw body>' (the t sent, a dot, the exact "
            "bytes sent) with the source's signing secret"
        )
    return SignatureVerdict(replay_key=f"ingest:signature:{source.pk}:{received}")


def signature_claim(replay_key: str) -> bool:
    """Remember a signature for the tolerance window; False if it was seen already.

    Both sides of the window count (a clock ahead or behind), so it is kept twice as long. If
    Redis is unreachable the request passes: it is still bounded by the tolerance window, and
    its events are deduplicated by event_id.
    """
    seconds = 2 * settings.INGEST_SIGNATURE_TOLERANCE_SECONDS
    try:
        return bool(ingest_queue().connection.set(replay_key, 1, nx=True, ex=seconds))
    except RedisError as error:
        logger.warning("signature replay not checked (Redis unreachable): %s", error)
        return True


def signature_release(replay_key: str) -> None:
    """Forget a claimed signature whose request was not stored, so the producer may retry it."""
    try:
        ingest_queue().connection.delete(replay_key)
    except RedisError as error:
        logger.warning("signature not released (Redis unreachable): %s", error)
