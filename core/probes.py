"""Is each dependency of this process reachable? One place for /readyz and on-call's page."""

import django_rq
from django.db import DatabaseError, connection
from redis.exceptions import RedisError


def database_problem() -> str | None:
    """None if the database answers, else what went wrong (host names included: not for
    anonymous eyes)."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as error:
        return str(error) or type(error).__name__
    return None


def redis_problem() -> str | None:
    try:
        django_rq.get_connection("default").ping()
    except RedisError as error:
        return str(error) or type(error).__name__
    return None
