"""Announcements to the live dashboards.

CONTRACT: writers call `core.notify.stock_changed_notify` in their transaction, naming the sites
whose numbers changed; after the commit `dashboards.receivers` calls `scopes_changed_announce`,
and the dashboards coalesce and recompute. Cheap: a few channel-layer messages, never a
computation. (On-call hears the same notification and asks for an alert evaluation: announcing
does not enqueue anything.)

Transport: the channels-redis layer, one group per scope (a dashboard shows one site, or all sites):
`dashboards.scope.all` and `dashboards.scope.site.<code>`, plus `dashboards.hubs` for changes
that concern every scope. The members of a group are not sockets but the hub
(`dashboards.live.DashboardHub`) of each Daphne process that has watchers of that scope: the hub
recomputes each scope at most once per coalescing interval and fans the frame out to its own
sockets. So the layer carries only small announcements, one copy per Daphne process, never a
15 kB frame per socket (which a group per socket would copy through Redis, and which a full
channel would drop silently, as measured on this stack). A lost announcement while no Daphne
listens is harmless: every client resynchronises fully when it (re)connects, and watched scopes are
recomputed every DASHBOARD_REFRESH_S anyway.
"""

import asyncio
import logging
import os
import threading
import time
from collections.abc import Iterable

from channels.layers import get_channel_layer
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

KIND_SCOPES = "scopes"
KIND_ALERTS = "alerts"
MESSAGE_TYPE = "dashboards.changed"
GROUP_EVERY_HUB = "dashboards.hubs"
GROUP_ALL_SITES = "dashboards.scope.all"
SEND_TIMEOUT_S = 2


def scope_group(site_code: str | None) -> str:
    """The channel-layer group of a scope (site codes are slugs: valid in group names)."""
    return GROUP_ALL_SITES if site_code is None else f"dashboards.scope.site.{site_code}"


def announcement_groups(site_codes: Iterable[str] | None) -> list[str]:
    """Who must hear of a change at these sites (None: every scope)."""
    if site_codes is None:
        return [GROUP_EVERY_HUB]
    return [GROUP_ALL_SITES, *(scope_group(code) for code in sorted(set(site_codes)))]


class _LayerLoop:
    """An event loop on a daemon thread, one per process, for sending from synchronous writers.

    `async_to_sync` would build a new loop per call, and channels-redis a new connection pool per
    loop: a TCP connect per announcement. This loop keeps its pool between announcements.
    """

    _lock = threading.Lock()
    _instance: "_LayerLoop | None" = None

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        threading.Thread(
            target=self.loop.run_forever, name="dashboards-announcements", daemon=True
        ).start()

    @classmethod
    def get(cls) -> "_LayerLoop":
        with cls._lock:
            # After a fork the thread is gone: start a new loop in the child.
            if cls._instance is None or cls._instance.pid != os.getpid():
                cls._instance = cls()
            return cls._instance

    def run(self, coroutine, *, timeout: float):
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result(timeout=timeout)
        except TimeoutError:
            future.cancel()
            raise


async def _groups_send(groups: list[str], message: dict) -> None:
    layer = get_channel_layer()
    # Concurrently: each group_send is a few round trips, and a batch can touch many sites.
    await asyncio.gather(*(layer.group_send(group, message) for group in groups))


def _announce(*, kind: str, site_codes: Iterable[str] | None) -> None:
    sites = None if site_codes is None else sorted(set(site_codes))
    # sent_at (wall clock, seconds): lets a hub report how long the announcement travelled.
    message = {"type": MESSAGE_TYPE, "kind": kind, "sites": sites, "sent_at": time.time()}
    try:
        try:
            _LayerLoop.get().run(
                _groups_send(announcement_groups(sites), message), timeout=SEND_TIMEOUT_S
            )
        except RedisConnectionError:
            # Once more: after a Redis restart the layer's pooled connections are dead, and
            # each fails once before the pool connects afresh.
            _LayerLoop.get().run(
                _groups_send(announcement_groups(sites), message), timeout=SEND_TIMEOUT_S
            )
    except (RedisError, OSError, TimeoutError):
        # The writer's transaction is already committed: failing it now would lose nothing but
        # the announcement, and the dashboards resync on reconnect. Say so loudly, do not raise.
        logger.exception("could not announce %s change for sites %s", kind, sites)


def scopes_changed_announce(*, site_codes: Iterable[str]) -> None:
    """Tell the dashboards that these sites (and so the all-sites scope) changed."""
    _announce(kind=KIND_SCOPES, site_codes=site_codes)


def alerts_changed_announce(*, site_codes: Iterable[str] | None) -> None:
    """Tell the dashboards that alerts opened or resolved for these sites (None: all-sites)."""
    _announce(kind=KIND_ALERTS, site_codes=site_codes)
