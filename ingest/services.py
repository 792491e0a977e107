"""Writes of the ingest domain."""

import hashlib
import secrets
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone

from ingest.exceptions import FeedSourceExists
from ingest.models import FeedSource

TOKEN_PREFIX = "iof_"  # noqa: S105 (a label, not a secret)


def token_hash(token: str) -> str:
    # Tokens are 256 random bits, so a fast hash is enough: nothing to brute-force.
    return hashlib.sha256(token.encode()).hexdigest()


def _new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class IssuedCredentials:
    """Credentials shown once; only their hash (token) stays in the database."""

    source: FeedSource
    token: str
    signing_secret: str


def feed_source_create(*, name: str, require_signature: bool = False) -> IssuedCredentials:
    name = name.strip()
    if not name:
        raise ValueError("a feed source needs a name")
    token = _new_token()
    secret = secrets.token_hex(32)
    try:
        with transaction.atomic():
            source = FeedSource.objects.create(
                name=name,
                token_hash=token_hash(token),
                token_prefix=token[: len(TOKEN_PREFIX) + 6],
                signing_secret=secret,
                require_signature=require_signature,
            )
    except IntegrityError:
        raise FeedSourceExists(name) from None
    return IssuedCredentials(source=source, token=token, signing_secret=secret)


def feed_source_rotate_token(*, source: FeedSource) -> str:
    """Replace the source's token; the old one stops working at once. Return the new one."""
    token = _new_token()
    FeedSource.objects.filter(pk=source.pk).update(
        token_hash=token_hash(token),
        token_prefix=token[: len(TOKEN_PREFIX) + 6],
        token_rotated_at=timezone.now(),
    )
    source.refresh_from_db()
    return token
