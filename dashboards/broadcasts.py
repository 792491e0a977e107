"""Announcements to the live dashboards.

CONTRACT: writers call `scopes_changed_announce` after their transaction commits
(`transaction.on_commit`), naming the sites whose numbers changed; the dashboards coalesce and
recompute. Cheap: one Redis PUBLISH, never a computation.

Why a plain Redis PUBLISH rather than a channel-layer `group_send`: the announcement only wakes
the coalescer (`dashboards.live.DashboardHub`) in each Daphne process, which recomputes each
watched scope at most every DASHBOARD_COALESCE_MS and fans the result out itself. PUBLISH is one
round trip from a synchronous worker (no event loop to build), and it cannot fill a channel's
capacity and be dropped silently (BASELINES.md); a lost announcement while no Daphne listens is
harmless, because every client resynchronises fully when it (re)connects.
"""

import json
import logging
from collections.abc import Iterable
from functools import cache

import redis
from django.conf import settings

from dashboards.oncall.alerts import alerts_evaluation_request

logger = logging.getLogger(__name__)

KIND_SCOPES = "scopes"
KIND_ALERTS = "alerts"


def announcements_channel() -> str:
    """The pub/sub channel name. Pub/sub ignores Redis DB numbers, so the DB is part of it."""
    connection_kwargs = redis.connection.parse_url(settings.REDIS_URL)
    return f"inventory_ops:db{connection_kwargs.get('db', 0)}:dashboards:announcements"


@cache
def _redis_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


def _publish(*, kind: str, site_codes: Iterable[str] | None) -> None:
    message = {"kind": kind, "sites": None if site_codes is None else sorted(set(site_codes))}
    try:
        _redis_client(settings.REDIS_URL).publish(announcements_channel(), json.dumps(message))
    except redis.RedisError:
        # The writer's transaction is already committed: failing it now would lose nothing but
        # the announcement, and the dashboards resync on reconnect. Say so loudly, do not raise.
        logger.exception("could not announce %s change for sites %s", kind, message["sites"])


def scopes_changed_announce(*, site_codes: Iterable[str]) -> None:
    """Tell the dashboards that these sites (and so the all-sites scope) changed."""
    site_codes = list(site_codes)
    _publish(kind=KIND_SCOPES, site_codes=site_codes)
    alerts_evaluation_request(site_codes=site_codes)


def alerts_changed_announce(*, site_codes: Iterable[str] | None) -> None:
    """Tell the dashboards that alerts opened or resolved for these sites (None: all-sites)."""
    _publish(kind=KIND_ALERTS, site_codes=site_codes)
