"""Asking for alert evaluations: cheap, coalesced, run by an RQ worker.

CONTRACT: `alerts_evaluation_request` is called by `dashboards.broadcasts.scopes_changed_announce`
(after a commit) and must stay cheap: it schedules an evaluation, it does not evaluate inline.

How a burst is coalesced: each request adds its sites to a Redis set and sets a "pending" flag
with SET NX; only the request that sets the flag enqueues a job. The job takes the set and
clears the flag in one MULTI before evaluating, so a change committed while it runs enqueues
the next job, and no change is left unevaluated. The flag expires (EVALUATION_PENDING_TTL) in
case a job is lost, and the scheduled evaluation (oncall/cron.py) catches up anyway.
"""

import logging
from collections.abc import Iterable
from functools import cache

import django_rq
import redis
from django.conf import settings
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

PENDING_FLAG_KEY = "oncall:alerts:evaluation-pending"
PENDING_SITES_KEY = "oncall:alerts:pending-sites"
EVALUATION_PENDING_TTL = 60
QUEUE = "default"


@cache
def _redis_client(url: str) -> redis.Redis:
    # One client (and connection pool) per process: django_rq.get_connection builds a new one
    # per call, a fresh TCP connection each time (milliseconds, measured in bench/).
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


def alerts_evaluation_request(*, site_codes: Iterable[str]) -> None:
    """Ask for the alert rules of these sites (and all-sites rules) to be evaluated soon.

    One Redis round trip (pipelined), plus one enqueue per burst. Never raises: if Redis is down
    the writer's commit still stands, and the scheduled evaluation catches up.
    """
    codes = sorted(set(site_codes))
    try:
        connection = _redis_client(settings.RQ_QUEUES[QUEUE]["URL"])
        pipeline = connection.pipeline(transaction=False)
        if codes:
            pipeline.sadd(PENDING_SITES_KEY, *codes)
        pipeline.set(PENDING_FLAG_KEY, 1, nx=True, ex=EVALUATION_PENDING_TTL)
        first_request = pipeline.execute()[-1]
        if first_request:
            from oncall.jobs import alerts_evaluation_job

            # Enqueued now, not at the next commit: the flag above is already set, and a job
            # deferred to a commit that never comes would leave it set with no job to clear it.
            queue = django_rq.get_queue(QUEUE, commit_mode="auto")
            queue.enqueue(alerts_evaluation_job, result_ttl=60)
    except RedisError as error:
        logger.warning("alert evaluation not requested, Redis unreachable: %s", error)


def pending_sites_take() -> list[str]:
    """Take the sites asked for since the last evaluation and clear the pending flag, at once."""
    connection = django_rq.get_connection(QUEUE)
    pipeline = connection.pipeline(transaction=True)
    pipeline.smembers(PENDING_SITES_KEY)
    pipeline.delete(PENDING_SITES_KEY, PENDING_FLAG_KEY)
    members, _ = pipeline.execute()
    return sorted(member.decode() if isinstance(member, bytes) else member for member in members)
