"""The live coalescer: one per Daphne process (per event loop), shared by all its sockets.

How an update travels:
1. a writer commits, and its `core.notify.stock_changed` reaches
   `dashboards.broadcasts.scopes_changed_announce`, which sends a small message to the
   channel-layer group of each changed scope (each site, and all sites);
2. the members of those groups are hubs, one per Daphne process that has watchers of the scope:
   the hub hears the message on its own channel and marks the watched scopes it covers dirty;
3. each dirty scope is recomputed at most once per coalescing interval, whatever the number of
   watchers, and the result is serialised once. Leading edge: a change to a scope that had no
   computation in the last interval is computed at once. Trailing edge: changes heard during
   the interval (or during a computation) are computed when it ends, so the last state is always
   sent. The interval adapts (`interval_seconds`): five times the CPU time the scope's last
   update cost (computation, serialisation and fan-out), bounded to 200 ms..1 s;
4. the same frame (htmx out-of-band fragments + Plotly figures) is sent to every watcher.

Why sockets are not group members themselves: RedisChannelLayer copies a group message into every
member's channel and each consumer pops its copy in its own round trip, so a 30 kB frame to 1,000
sockets would be 30 MB through Redis per update, and a full channel drops messages silently
(measured on this stack). Here the layer carries only the tiny announcement, once per process; the
watchers of a scope in this process are that scope's group locally.

No database writes here: computing a view only reads.
"""

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol
from weakref import WeakKeyDictionary

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from redis.exceptions import RedisError

from core.outages import OUTAGE_ERRORS
from dashboards import panels
from dashboards.broadcasts import GROUP_EVERY_HUB, KIND_ALERTS, KIND_SCOPES, scope_group
from dashboards.panels import Scope

logger = logging.getLogger(__name__)

FULL = "full"
ALERTS = "alerts"


class Watcher(Protocol):
    async def frame_send(self, frame: str) -> None: ...

    async def unavailable_close(self) -> None:
        """Close: the database or Redis is away (the client shows it and retries)."""


@dataclass(eq=False)
class ScopeState:
    watchers: set = field(default_factory=set)
    dirty: set[str] = field(default_factory=set)  # parts waiting: FULL and/or ALERTS
    last_started: float = -math.inf  # monotonic time the last full computation started
    interval: float = 0.0  # seconds until the next full computation may start (adaptive)
    task: asyncio.Task | None = None
    computing: bool = False
    latest_frame: str | None = None
    latest_at: float = -math.inf
    # (writer's sent_at, heard at) of the first change announced since the last computation
    # started, wall-clock seconds: the frame reports it, so a client can see where time went.
    first_change: tuple[float | None, float] | None = None
    # The "Restock now" panel as last computed: a view within its interval reuses it, and a
    # computation is then due when the interval ends (`follow_up`), so it stays live.
    restock: panels.RestockMemo = field(default_factory=panels.RestockMemo)
    follow_up: asyncio.TimerHandle | None = None


# The interval is this many times the CPU cost of the scope's last update: a scope's updates use
# at most a fifth of a core, whatever its audience.
COALESCE_COST_FACTOR = 5


def coalesce_bounds() -> tuple[float, float]:
    """(shortest, longest) coalescing interval in seconds. DASHBOARD_COALESCE_MS, when set,
    pins the interval; otherwise it adapts between DASHBOARD_COALESCE_MIN_MS (200: at most five
    computations per second per scope) and DASHBOARD_COALESCE_MAX_MS (1,000)."""
    pinned = getattr(settings, "DASHBOARD_COALESCE_MS", None)
    if pinned is not None:
        return pinned / 1000, pinned / 1000
    return (
        getattr(settings, "DASHBOARD_COALESCE_MIN_MS", 200) / 1000,
        getattr(settings, "DASHBOARD_COALESCE_MAX_MS", 1000) / 1000,
    )


def interval_seconds(last_cost: float) -> float:
    """How long a scope waits after a computation starts before the next may start.

    How it decides: `last_cost` is the CPU time of the scope's last update: the computing
    thread's CPU for the view, plus the event loop's CPU while it serialised the frame and sent
    it to every watcher of this process. The interval is COALESCE_COST_FACTOR times that, within
    `coalesce_bounds()`. A view that costs 15-40 ms of CPU (a site scope) gets the floor,
    200 ms: at most 5 computations per second, and a continuous flow waits 100 ms on average.
    When updates get dearer (the all-sites scope of many sites, a fan-out to 1,000 sockets at
    ~0.4 ms each) the interval grows with them, up to 1 s, so the hub backs off instead of
    computing back to back. It follows the last update only, so it comes back down as soon as
    one update is cheap again.

    CPU, not wall time: on a machine shared with other work the wall time grows with everyone's
    load, and backing off for it only makes the screens later without saving anything. Measured
    at load 15 on 2 cores: a view of 27 ms of CPU took 200 ms of wall time; sized from that, the
    interval was 1 s and a batch every 0.6 s waited for it (p50 777 ms from event to screen).
    """
    shortest, longest = coalesce_bounds()
    return min(longest, max(shortest, COALESCE_COST_FACTOR * last_cost))


def refresh_seconds() -> float:
    """Recompute watched scopes at least this often: windows slide and feeds age with time."""
    return getattr(settings, "DASHBOARD_REFRESH_S", 10)


# Group memberships expire in the layer (CHANNEL_LAYERS group_expiry), so that a Daphne process
# that died leaves its groups; a live hub renews its memberships at least this often.
GROUP_RENEW_S = 60


def frame_timing(
    first_change: tuple[float | None, float] | None,
    *,
    started: float,
    computed: float,
    cpu: float,
) -> dict:
    """Where a view frame's time went, in wall-clock seconds (Unix time), for benchmarks and
    for anyone asking how old a frame's data is.

    `heard`: when this hub heard the first change announced since the previous computation
    started (or was asked for the view: a first view, a resync, a periodic refresh);
    `announced`: when the writer sent that announcement (None if not an announcement);
    `started` and `computed`: the view computation, which used `cpu` seconds of its thread's
    CPU time (the rest is waiting: for the database, for the CPU, for Python's lock).
    """
    announced, heard = first_change if first_change is not None else (None, None)
    return {
        "announced": announced,
        "heard": heard,
        "started": started,
        "computed": computed,
        "cpu": cpu,
    }


class DashboardHub:
    def __init__(
        self,
        *,
        view_build: Callable[[Scope], dict] = panels.scope_view_build,
        alerts_build: Callable[[Scope], str] = panels.alerts_fragment_render,
    ) -> None:
        self.scopes: dict[Scope, ScopeState] = {}
        self.computations = 0  # full view computations by this process, shown in every frame
        self._view_build = view_build
        self._alerts_build = alerts_build
        self._background: list[asyncio.Task] = []
        self.listening = asyncio.Event()
        # (sent_at, heard at) of the announcement being handled, only while it is: `_request`
        # records it as a scope's first change (announcement_handle keeps its signature).
        self._announcement_times: tuple[float | None, float] | None = None
        self.channel: str | None = None  # this hub's channel-layer channel
        self.groups_joined: set[str] = set()
        # Set while the listener cannot reach Redis: no announcement can arrive, so the pages
        # would show numbers that silently stop changing. Watchers are closed and refused
        # ("server unavailable, retrying") until it is back.
        self.redis_lost = False

    # --- watchers ---------------------------------------------------------------------------
    async def watch(self, scope: Scope, watcher: Watcher) -> None:
        """Add a watcher and bring it up to date (a full resync, as after any reconnect)."""
        self._background_start()
        if self.redis_lost:
            await self._unavailable_close([watcher])
            return
        state = self.scopes.setdefault(scope, ScopeState())
        state.watchers.add(watcher)
        # Join before computing, so that no change committed after the computation is missed.
        if not await self._group_join_if_listening(scope_group(scope.site)):
            state.watchers.discard(watcher)
            await self._unavailable_close([watcher])
            return
        if state.computing:
            return  # the running computation's frame goes to every watcher, this one included
        # The cached view is still right if no change was announced since (dirty is empty);
        # only time-driven figures age, and the periodic refresh bounds that age anyway.
        fresh = time.monotonic() - state.latest_at < refresh_seconds()
        if state.latest_frame is not None and fresh and not state.dirty:
            if not await self._send(watcher, state.latest_frame):
                state.watchers.discard(watcher)
        else:
            self._request(scope, FULL)

    def unwatch(self, scope: Scope, watcher: Watcher) -> None:
        state = self.scopes.get(scope)
        if state is None:
            return
        state.watchers.discard(watcher)
        if not state.watchers and not state.computing:
            if state.task:
                state.task.cancel()
            del self.scopes[scope]

    def watcher_count(self) -> int:
        return sum(len(state.watchers) for state in self.scopes.values())

    # --- announcements ----------------------------------------------------------------------
    def announcement_handle(self, kind: str, site_codes: list[str] | None) -> None:
        part = ALERTS if kind == KIND_ALERTS else FULL
        for scope in list(self.scopes):
            if scope.covers(site_codes):
                self._request(scope, part)

    def _request(self, scope: Scope, part: str) -> None:
        state = self.scopes[scope]
        state.dirty.add(part)
        if part == FULL and state.first_change is None:
            state.first_change = self._announcement_times or (None, time.time())
        if state.task is None or state.task.done():
            state.task = asyncio.get_running_loop().create_task(self._run(scope, state))

    async def _run(self, scope: Scope, state: ScopeState) -> None:
        """Compute while the scope is dirty, never starting two full computations within the
        coalescing interval: at once if the last one started an interval ago or more (leading
        edge), else when the interval ends (trailing edge). Announcements during a computation
        only mark it dirty again, so the state after the last change is always computed."""
        while state.dirty and state.watchers:
            if FULL in state.dirty:
                wait = state.last_started + state.interval - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                state.dirty.clear()  # a full view includes the alerts
                state.last_started = time.monotonic()
                first_change, state.first_change = state.first_change, None
                await self._full_view_send(scope, state, first_change)
            else:
                state.dirty.discard(ALERTS)
                await self._alerts_send(scope, state)
        if not state.watchers and self.scopes.get(scope) is state:
            del self.scopes[scope]  # the last watcher left while we were computing

    async def _full_view_send(
        self, scope: Scope, state: ScopeState, first_change: tuple[float | None, float] | None
    ) -> None:
        state.computing = True
        try:
            started = time.time()
            payload, cpu = await database_sync_to_async(self._view_build_timed)(scope, state)
            loop_cpu_started = time.thread_time()
            payload["computations"] = self.computations + 1
            payload["timing"] = frame_timing(
                first_change, started=started, computed=time.time(), cpu=cpu
            )
            frame = json.dumps(payload)
        except OUTAGE_ERRORS as error:
            # The database (or Redis) is away: say so and let the clients retry until it is
            # back, rather than show numbers that cannot be refreshed.
            logger.warning("dashboard view %s: dependency unavailable: %s", scope.key, error)
            await self._unavailable_close(list(state.watchers))
            state.watchers.clear()
            return
        except Exception as error:
            # Keep serving the other scopes; the clients show "stale" until a view comes.
            logger.exception("dashboard view %s could not be computed", scope.key)
            frame = json.dumps({"type": "degraded", "message": f"update failed: {error}"})
            await self._broadcast(state, frame)
            return
        finally:
            state.computing = False
        self.computations += 1
        # Cached before the fan-out: a watcher joining mid-broadcast gets this frame from watch().
        state.latest_frame, state.latest_at = frame, time.monotonic()
        if state.restock.reused:
            self._follow_up_schedule(scope, state)
        await self._broadcast(state, frame)
        # The serialisation and fan-out are part of the update's cost (1,000 sockets: ~0.4 s).
        state.interval = interval_seconds(cpu + time.thread_time() - loop_cpu_started)

    def _follow_up_schedule(self, scope: Scope, state: ScopeState) -> None:
        """A view showed the restock panel as computed earlier: compute the scope again when
        the panel's interval is over (once, however many views reused it)."""
        if state.follow_up is not None and not state.follow_up.cancelled():
            return
        delay = state.restock.computed_at + panels.restock_interval_s() - time.monotonic()

        def follow_up() -> None:
            state.follow_up = None
            if self.scopes.get(scope) is state and state.watchers:
                self._request(scope, FULL)

        state.follow_up = asyncio.get_running_loop().call_later(max(0.0, delay), follow_up)

    def _view_build_timed(self, scope: Scope, state: ScopeState) -> tuple[dict, float]:
        # The interval counts from when the computation really starts: its thread may have
        # waited for the executor (tens of ms under load), and the next computation must still
        # start a whole interval later.
        state.last_started = time.monotonic()
        cpu_before = time.thread_time()
        lent = panels.restock_memo.set(state.restock)
        try:
            payload = self._view_build(scope)
        finally:
            panels.restock_memo.reset(lent)
        return payload, time.thread_time() - cpu_before

    async def _alerts_send(self, scope: Scope, state: ScopeState) -> None:
        try:
            html = await database_sync_to_async(self._alerts_build)(scope)
        except Exception:
            logger.exception("alerts panel for %s could not be rendered", scope.key)
            return
        # The cached full view now shows old alerts: the next watcher gets a fresh computation.
        state.latest_frame = None
        await self._broadcast(state, json.dumps({"type": "alerts", "html": html}))

    async def _broadcast(self, state: ScopeState, frame: str) -> None:
        for watcher in list(state.watchers):
            if not await self._send(watcher, frame):
                state.watchers.discard(watcher)

    async def _unavailable_close(self, watchers: list) -> None:
        for watcher in watchers:
            try:
                await watcher.unavailable_close()
            except Exception:  # already gone: nothing to tell it
                logger.debug("a watcher could not be closed", exc_info=True)

    async def _send(self, watcher: Watcher, frame: str) -> bool:
        try:
            await watcher.frame_send(frame)
        except Exception:
            # One broken socket must not stop the fan-out to the others: drop it (its client
            # reconnects and resyncs).
            logger.warning("dropping a dashboard watcher that failed a send", exc_info=True)
            return False
        return True

    # --- background: announcements listener and periodic refresh ------------------------------
    def _background_start(self) -> None:
        if self._background:
            return
        loop = asyncio.get_running_loop()
        self._background = [
            loop.create_task(self._listen(), name="dashboards-announcements"),
            loop.create_task(self._refresh_periodically(), name="dashboards-refresh"),
        ]

    def _groups_wanted(self) -> set[str]:
        return {GROUP_EVERY_HUB} | {scope_group(scope.site) for scope in self.scopes}

    async def _group_join_if_listening(self, group: str) -> bool:
        """Join a scope's group now; while the listener is (re)starting, it joins them all.
        False if Redis refused: the watcher would never hear the scope's changes."""
        if group in self.groups_joined or not self.listening.is_set():
            return True
        for attempt in (1, 2):  # after a Redis restart each pooled connection fails once
            try:
                await get_channel_layer().group_add(group, self.channel)
                self.groups_joined.add(group)
                return True
            except (RedisError, OSError):
                if attempt == 2:
                    logger.warning("could not join %s: Redis unreachable", group)
        return False

    async def _listen(self) -> None:
        layer = get_channel_layer()
        self.channel = await layer.new_channel("dashboards.hub.")
        backoff = 0.5
        while True:
            try:
                self.groups_joined.clear()
                # Scopes may be added while we join: loop until none is missing, then set
                # `listening` with no await in between, so that watch() joins any later one.
                while missing := self._groups_wanted() - self.groups_joined:
                    for group in sorted(missing):
                        await layer.group_add(group, self.channel)
                        self.groups_joined.add(group)
                if backoff > 0.5:
                    # Announcements may have been missed while disconnected: recompute all.
                    self.announcement_handle(KIND_SCOPES, None)
                backoff = 0.5
                self.redis_lost = False
                self.listening.set()
                while True:
                    self._announcement_parse(await layer.receive(self.channel))
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError):
                self.listening.clear()
                logger.warning("announcements listener lost Redis; retrying in %.1fs", backoff)
                if not self.redis_lost:
                    self.redis_lost = True
                    watchers = []
                    for state in self.scopes.values():
                        watchers += state.watchers
                        state.watchers.clear()  # they reconnect, and resync, when it is back
                    await self._unavailable_close(watchers)
                await asyncio.sleep(backoff)
                # At most a second apart: the pages come back within seconds of Redis.
                backoff = min(backoff * 2, 1)

    def _announcement_parse(self, message: dict) -> None:
        try:
            kind, sites = message["kind"], message["sites"]
        except (KeyError, TypeError):
            logger.warning("ignoring a malformed dashboard announcement: %r", message)
            return
        sent_at = message.get("sent_at")
        self._announcement_times = (
            sent_at if isinstance(sent_at, int | float) else None,
            time.time(),
        )
        try:
            self.announcement_handle(kind, sites)
        finally:
            self._announcement_times = None

    async def _refresh_periodically(self) -> None:
        renewed = time.monotonic()
        while True:
            await asyncio.sleep(min(refresh_seconds(), GROUP_RENEW_S))
            stale_before = time.monotonic() - refresh_seconds()
            for scope, state in list(self.scopes.items()):
                if state.watchers and state.latest_at < stale_before:
                    self._request(scope, FULL)
            if self.listening.is_set() and time.monotonic() - renewed >= GROUP_RENEW_S / 2:
                renewed = time.monotonic()
                await self._groups_renew()

    async def _groups_renew(self) -> None:
        layer = get_channel_layer()
        try:
            for group in sorted(self.groups_joined):
                await layer.group_add(group, self.channel)
        except (RedisError, OSError):
            logger.warning("could not renew dashboard group memberships", exc_info=True)

    async def close(self) -> None:
        tasks = self._background + [s.task for s in self.scopes.values() if s.task]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._background = []
        if self.channel is not None and self.groups_joined:
            # Leave at once rather than at expiry; if Redis is gone, expiry does it.
            with contextlib.suppress(RedisError, OSError):
                layer = get_channel_layer()
                for group in self.groups_joined:
                    await layer.group_discard(group, self.channel)
        self.groups_joined.clear()
        self.listening.clear()


_hubs: "WeakKeyDictionary[asyncio.AbstractEventLoop, DashboardHub]" = WeakKeyDictionary()


def hub_get() -> DashboardHub:
    """The hub of the running event loop (Daphne runs one loop per process)."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        hub = _hubs[loop] = DashboardHub()
    return hub


def websocket_clients_count() -> int:
    """Dashboard sockets open in this process (for /metrics)."""
    return sum(hub.watcher_count() for hub in list(_hubs.values()))
