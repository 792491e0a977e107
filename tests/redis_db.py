"""The Redis database a test run owns, and the one way tests empty it.

Tests empty their Redis database (FLUSHDB) to start from a known queue. Run outside `make`, a
bare `pytest` would read REDIS_URL's default, the development database that `make run` uses,
and wipe its queues. So the suite runs only against a database it was given on purpose:
REDIS_URL must be set in the environment, to a database other than 0 (`make test` uses 15).
"""

import os

import redis
from django.conf import settings

# The database `make run`, the settings' default and most Redis clients use.
DEVELOPMENT_DB = 0


def redis_db_number(url: str) -> int:
    return int(redis.ConnectionPool.from_url(url).connection_kwargs.get("db") or 0)


def redis_db_refusal(*, environ_url: str | None, url: str) -> str | None:
    """Say why the suite must not touch the Redis database at `url`; None when it may."""
    fix = (
        "Run `make test`, or set REDIS_URL to a database of this test run's own, for example "
        "REDIS_URL=redis://127.0.0.1:6379/15 (the tests empty it)."
    )
    if not environ_url:
        return (
            f"REDIS_URL is not set, so the tests would use {url}, the development database, "
            f"and empty it. {fix}"
        )
    if redis_db_number(url) == DEVELOPMENT_DB:
        return (
            f"REDIS_URL names database {DEVELOPMENT_DB} ({url}), the development database "
            f"that `make run` uses; the tests empty the database they run on. {fix}"
        )
    return None


def redis_db_refusal_now() -> str | None:
    return redis_db_refusal(environ_url=os.environ.get("REDIS_URL"), url=settings.REDIS_URL)


def redis_test_db_flush() -> redis.Redis:
    """Empty this test run's Redis database (FLUSHDB, never FLUSHALL); return a client of it."""
    refusal = redis_db_refusal_now()
    if refusal:
        raise RuntimeError(refusal)
    connection = redis.Redis.from_url(settings.REDIS_URL)
    connection.flushdb()
    return connection
