"""The one Redis client of a process (per URL and timeout).

`django_rq.get_connection` builds a new client, and so a new TCP connection, per call
(milliseconds each, measured in bench/): code on a hot path (the ingest API, writers after their
commit) takes its client here instead.
"""

import functools

from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry


@functools.cache
def redis_client(url: str, *, timeout: float, retries: bool = True) -> Redis:
    """A client with socket timeouts, so a hung Redis costs `timeout` seconds, not the caller.

    `retries=False` where a failure has another way round (a batch not enqueued stays queued for
    the sweeper) and a retry would only make the caller wait longer.
    """
    options = {} if retries else {"retry": Retry(NoBackoff(), retries=0)}
    return Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout, **options)
