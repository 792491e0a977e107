"""Asking for alert evaluations: cheap, coalesced, run by an RQ worker.

CONTRACT: `alerts_evaluation_request` hears `core.notify.stock_changed` (after a writer's commit;
connected by `OncallConfig.ready`) and must stay cheap: it schedules an evaluation, it does not
evaluate inline.

How a burst is coalesced: each request adds its sites to a Redis set and sets a "pending" flag
with SET NX; only the request that sets the flag enqueues a job. The job takes the set and
clears the flag in one MULTI before evaluating, so a change committed while it runs enqueues
the next job, and no change is left unevaluated. The flag expires (EVALUATION_PENDING_TTL) in
case a job is lost, and the scheduled evaluation (oncall/schedule.py) catches up anyway.
"""

import logging
from collections.abc import Iterable

import django_rq
from django.conf import settings
from redis.exceptions import RedisError

from core.queues import DEFAULT_QUEUE
from core.redis import redis_client

logger = logging.getLogger(__name__)

PENDING_FLAG_KEY = "oncall:alerts:evaluation-pending"
PENDING_SITES_KEY = "oncall:alerts:pending-sites"
EVALUATION_PENDING_TTL = 60
QUEUE = DEFAULT_QUEUE


def alerts_evaluation_request(*, site_codes: Iterable[str]) -> None:
    """Ask for the alert rules of these sites (and all-sites rules) to be evaluated soon.

    One Redis round trip (pipelined), plus one enqueue per burst. Never raises: if Redis is down
    the writer's commit still stands, and the scheduled evaluation catches up.
    """
    codes = sorted(set(site_codes))
    try:
        connection = redis_client(settings.RQ_QUEUES[QUEUE]["URL"], timeout=2)
        pipeline = connection.pipeline(transaction=False)
        if codes:
            pipeline.sadd(PENDING_SITES_KEY, *codes)
        pipeline.set(PENDING_FLAG_KEY, 1, nx=True, ex=EVALUATION_PENDING_TTL)
        first_request = pipeline.execute()[-1]
        if first_request:
            # Enqueued now, not at the next commit: the flag above is already set, and a job
            # deferred to a commit that never comes would leave it set with no job to clear it.
            queue = django_rq.get_queue(QUEUE, commit_mode="auto")
            queue.enqueue("oncall.jobs.alerts_evaluation_job", result_ttl=60)
    except RedisError as error:
        logger.warning("alert evaluation not requested, Redis unreachable: %s", error)


def stock_changed_evaluation_request(sender, *, site_codes: Iterable[str], **kwargs) -> None:
    """`core.notify.stock_changed`'s subscriber: stock changed at these sites, evaluate soon."""
    alerts_evaluation_request(site_codes=site_codes)


def pending_sites_take() -> list[str]:
    """Take the sites asked for since the last evaluation and clear the pending flag, at once."""
    connection = django_rq.get_connection(QUEUE)
    pipeline = connection.pipeline(transaction=True)
    pipeline.smembers(PENDING_SITES_KEY)
    pipeline.delete(PENDING_SITES_KEY, PENDING_FLAG_KEY)
    members, _ = pipeline.execute()
    return sorted(member.decode() if isinstance(member, bytes) else member for member in members)
