"""Is each dependency of this process reachable, and how full are the queues? One place for
/readyz, /metrics, on-call's page and its alerts."""

from dataclasses import dataclass

import django_rq
from django.db import DatabaseError, connection
from redis.exceptions import RedisError
from rq.registry import FailedJobRegistry, StartedJobRegistry

from core.queues import DEFAULT_QUEUE, QUEUE_NAMES


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
        django_rq.get_connection(DEFAULT_QUEUE).ping()
    except RedisError as error:
        return str(error) or type(error).__name__
    return None


@dataclass(frozen=True)
class QueueCounts:
    name: str
    queued: int
    started: int
    failed: int


def queue_counts() -> list[QueueCounts]:
    """How many jobs wait, run and have failed in each RQ queue. Raises RedisError."""
    counts = []
    for name in QUEUE_NAMES:
        queue = django_rq.get_queue(name)
        counts.append(
            QueueCounts(
                name,
                queue.count,
                StartedJobRegistry(queue=queue).count,
                FailedJobRegistry(queue=queue).count,
            )
        )
    return counts
