"""Feed sources and their tokens: creating, rotating, ending a grace period, authenticating."""

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import NamedTuple

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from ingest.exceptions import FeedSourceExists, FeedSourceInvalid, FeedSourceNotAllowed
from ingest.models import (
    FeedSource,
)

TOKEN_PREFIX = "iof_"  # noqa: S105 (a label, not a secret)
TOKEN_USE_RECORD_INTERVAL = timedelta(minutes=1)
# Managing feed sources (creating one, rotating its token) is an integration administrator's job:
# no shipped role has this permission, superusers do (docs/ingest.md, "Who manages sources").
MANAGE_FEED_SOURCES = "ingest.change_feedsource"


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


def feed_source_create(
    *,
    name: str,
    require_signature: bool = False,
    accept_body_signature: bool = True,
    created_by=None,
) -> IssuedCredentials:
    """Create a source and its credentials (shown once).

    `created_by` is the person asking (from a screen), who needs `ingest.add_feedsource`; None is
    an operator at the server's shell (`create_feed_source`).
    """
    if created_by is not None and not created_by.has_perm("ingest.add_feedsource"):
        raise FeedSourceNotAllowed("create feed sources")
    name = name.strip()
    if not name:
        raise FeedSourceInvalid("a feed source needs a name")
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
                legacy_body_signature=accept_body_signature,
            )
    except IntegrityError:
        raise FeedSourceExists(name) from None
    return IssuedCredentials(source=source, token=token, signing_secret=secret)


def feed_source_rotate_token(
    *, source: FeedSource, rotated_by=None, grace: timedelta | None = None
) -> str:
    """Give the source a new token and return it; the old one keeps working for `grace`
    (default INGEST_TOKEN_GRACE_SECONDS), so the producer can switch without a gap.

    `rotated_by` is the person asking (from a screen), who needs MANAGE_FEED_SOURCES; None is an
    operator at the server's shell (`create_feed_source --rotate`), who holds its keys anyway.
    A token rotated before that is out of its grace period at once: one previous token at most.
    """
    if rotated_by is not None and not rotated_by.has_perm(MANAGE_FEED_SOURCES):
        raise FeedSourceNotAllowed("rotate feed tokens")
    if grace is None:
        grace = timedelta(seconds=settings.INGEST_TOKEN_GRACE_SECONDS)
    now = timezone.now()
    token = _new_token()
    with transaction.atomic():
        current = FeedSource.objects.select_for_update().get(pk=source.pk)
        keep_previous = grace > timedelta(0)
        FeedSource.objects.filter(pk=source.pk).update(
            token_hash=token_hash(token),
            token_prefix=token[: len(TOKEN_PREFIX) + 6],
            token_rotated_at=now,
            token_last_used_at=None,
            previous_token_hash=current.token_hash if keep_previous else "",
            previous_token_valid_until=now + grace if keep_previous else None,
            previous_token_last_used_at=current.token_last_used_at if keep_previous else None,
        )
    source.refresh_from_db()
    return token


def feed_source_end_token_grace(*, source: FeedSource, ended_by=None) -> None:
    """Stop the previous token now (a leaked token must not wait out its grace period)."""
    if ended_by is not None and not ended_by.has_perm(MANAGE_FEED_SOURCES):
        raise FeedSourceNotAllowed("end a rotated token's grace period")
    FeedSource.objects.filter(pk=source.pk).update(
        previous_token_hash="", previous_token_valid_until=None
    )
    source.refresh_from_db()


# Which source a token opens, the one rule for both checks below: the source's current token, or
# its previous one during the grace period after a rotation.
_SOURCE_OF_DIGEST = (
    "WHERE token_hash = %s OR (previous_token_hash = %s AND previous_token_valid_until > %s) "
    "ORDER BY id LIMIT 1"
)


def _db_now(now=None):
    # As the ORM would pass it (SQLite stores times as naive UTC text).
    return connection.ops.adapt_datetimefield_value(now or timezone.now())


class TokenHolder(NamedTuple):
    """What a read needs of the source a token opens (`feed_token_holder`)."""

    name: str
    is_active: bool


def feed_token_holder(*, token: str) -> TokenHolder | None:
    """The name and state of the source this token opens, by the same rule as
    `feed_source_by_token`, for read access: one narrow row, no use noted (what the operator
    sees as a token's last use is which producers still send)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT name, is_active FROM {FeedSource._meta.db_table} {_SOURCE_OF_DIGEST}",  # noqa: S608
            [(digest := token_hash(token)), digest, _db_now()],
        )
        row = cursor.fetchone()
    return None if row is None else TokenHolder(row[0], bool(row[1]))


def feed_source_by_token(*, token: str) -> FeedSource | None:
    """The source whose current token this is, or whose previous one in its grace period.

    Notes when the token was used, at most once per TOKEN_USE_RECORD_INTERVAL, so the hot path
    writes once a minute per token rather than on every request.
    """
    digest = token_hash(token)
    now = timezone.now()
    # Raw SQL (only our table name interpolated): every feed request asks this, and compiling
    # the ORM's query cost more than running it. `raw` converts the columns as the ORM does.
    found = FeedSource.objects.raw(
        f"SELECT * FROM {FeedSource._meta.db_table} {_SOURCE_OF_DIGEST}",  # noqa: S608
        [digest, digest, _db_now(now)],
    )
    source = next(iter(found), None)
    if source is None:
        return None
    field = "token_last_used_at" if source.token_hash == digest else "previous_token_last_used_at"
    last_used = getattr(source, field)
    if last_used is None or now - last_used >= TOKEN_USE_RECORD_INTERVAL:
        FeedSource.objects.filter(pk=source.pk).update(**{field: now})
        setattr(source, field, now)
    return source
