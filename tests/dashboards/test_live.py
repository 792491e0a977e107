"""The coalescer (dashboards.live.DashboardHub): one computation per scope per interval, fanned
out to every watcher, whatever the number of watchers and announcements."""

import asyncio
import itertools
import json
import statistics
import time

import pytest

from dashboards.broadcasts import (
    KIND_ALERTS,
    KIND_SCOPES,
    alerts_changed_announce,
    scopes_changed_announce,
)
from dashboards.live import DashboardHub
from dashboards.panels import Scope


class RecordingWatcher:
    def __init__(self):
        self.frames: list[dict] = []

    async def frame_send(self, frame: str) -> None:
        self.frames.append(json.loads(frame))


class CountingViews:
    """Stands in for the database-backed view builder: counts calls, records their times."""

    def __init__(self, fail: bool = False):
        self.calls: list[tuple[str, float]] = []
        self.fail = fail

    def __call__(self, scope: Scope) -> dict:
        self.calls.append((scope.key, time.monotonic()))
        if self.fail:
            raise RuntimeError("database unreachable")
        return {"type": "view", "scope": scope.key, "html": "", "charts": {}}


def hub_run(scenario, **hub_options):
    async def main():
        hub = DashboardHub(**hub_options)
        try:
            return await scenario(hub)
        finally:
            await hub.close()

    return asyncio.run(main())


@pytest.fixture(autouse=True)
def quick_coalescing(settings):
    settings.DASHBOARD_COALESCE_MS = 200
    settings.DASHBOARD_REFRESH_S = 3600


def test_a_burst_of_10000_announcements_to_1000_watchers_costs_a_few_computations():
    # given 1,000 watchers of one scope, each already sent its first view
    views = CountingViews()
    watchers = [RecordingWatcher() for _ in range(1000)]
    scope = Scope(site=None, window="1h")

    async def scenario(hub):
        for watcher in watchers:
            await hub.watch(scope, watcher)
        await asyncio.sleep(0.3)
        first = len(views.calls)
        # when 10,000 announcements arrive over one second (longer on a loaded machine)
        started = time.monotonic()
        for _ in range(100):
            for _ in range(100):
                hub.announcement_handle(KIND_SCOPES, ["ams"])
            await asyncio.sleep(0.01)
        elapsed = time.monotonic() - started
        await asyncio.sleep(0.5)
        return first, elapsed

    first_computations, elapsed = hub_run(scenario, view_build=views)

    # then joining cost one computation, and the burst a handful: at most one per coalescing
    # interval (200 ms) that the burst lasted, not one per event or watcher
    assert first_computations == 1
    burst_computations = len(views.calls) - first_computations
    assert 1 <= burst_computations <= elapsed / 0.2 + 3
    # and every watcher received exactly one frame per computation
    assert {len(watcher.frames) for watcher in watchers} == {len(views.calls)}


def test_recomputes_a_scope_at_most_once_per_coalescing_interval():
    # given a watched scope
    views = CountingViews()
    scope = Scope(site="ams", window="1h")

    async def scenario(hub):
        await hub.watch(scope, RecordingWatcher())
        await asyncio.sleep(0.05)
        # when changes keep coming every 20 ms for a second
        for _ in range(50):
            hub.announcement_handle(KIND_SCOPES, ["ams"])
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)

    hub_run(scenario, view_build=views)

    # then computations start at least the interval (200 ms here) apart
    starts = [started for _, started in views.calls]
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert len(starts) >= 3, starts
    assert min(gaps) >= 0.19, gaps


def test_a_change_at_one_site_updates_that_site_and_all_sites_not_another_site():
    # given watchers of site ams, site rtm and all sites
    views = CountingViews()
    ams, rtm, everything = RecordingWatcher(), RecordingWatcher(), RecordingWatcher()

    async def scenario(hub):
        await hub.watch(Scope("ams", "1h"), ams)
        await hub.watch(Scope("rtm", "1h"), rtm)
        await hub.watch(Scope(None, "24h"), everything)
        await asyncio.sleep(0.3)
        # when ams changes
        hub.announcement_handle(KIND_SCOPES, ["ams"])
        await asyncio.sleep(0.3)

    hub_run(scenario, view_build=views)

    # then ams and all-sites got a second view; rtm only its first
    assert [frame["scope"] for frame in ams.frames] == ["ams|1h", "ams|1h"]
    assert [frame["scope"] for frame in everything.frames] == ["*|24h", "*|24h"]
    assert [frame["scope"] for frame in rtm.frames] == ["rtm|1h"]


def test_a_new_watcher_gets_the_fresh_cached_view_without_a_computation():
    views = CountingViews()
    scope = Scope("ams", "1h")
    late = RecordingWatcher()

    async def scenario(hub):
        await hub.watch(scope, RecordingWatcher())
        await asyncio.sleep(0.05)
        await hub.watch(scope, late)

    hub_run(scenario, view_build=views)

    assert len(views.calls) == 1
    assert [frame["type"] for frame in late.frames] == ["view"]
    assert late.frames[0]["computations"] == 1


def test_alert_changes_send_only_the_alerts_panel_without_computing_kpis():
    views = CountingViews()
    watcher = RecordingWatcher()

    async def scenario(hub):
        await hub.watch(Scope("ams", "1h"), watcher)
        await asyncio.sleep(0.3)
        hub.announcement_handle(KIND_ALERTS, ["ams"])
        await asyncio.sleep(0.1)

    hub_run(scenario, view_build=views, alerts_build=lambda scope: f"<p>{scope.key}</p>")

    assert len(views.calls) == 1
    assert watcher.frames[-1] == {"type": "alerts", "html": "<p>ams|1h</p>"}


def test_a_watcher_joining_after_an_alerts_change_gets_a_fresh_view_not_the_cached_one():
    views = CountingViews()
    late = RecordingWatcher()

    async def scenario(hub):
        await hub.watch(Scope("ams", "1h"), RecordingWatcher())
        await asyncio.sleep(0.3)
        hub.announcement_handle(KIND_ALERTS, ["ams"])
        await asyncio.sleep(0.1)
        await hub.watch(Scope("ams", "1h"), late)
        await asyncio.sleep(0.1)

    hub_run(scenario, view_build=views, alerts_build=lambda scope: "<p>new alert</p>")

    assert len(views.calls) == 2
    assert [frame["type"] for frame in late.frames] == ["view"]


def test_a_scope_nobody_watches_any_more_is_forgotten():
    async def scenario(hub):
        watcher = RecordingWatcher()
        await hub.watch(Scope("ams", "1h"), watcher)
        await asyncio.sleep(0)  # the computation has started
        hub.unwatch(Scope("ams", "1h"), watcher)
        await asyncio.sleep(0.1)
        return dict(hub.scopes), hub.watcher_count()

    scopes, watchers = hub_run(scenario, view_build=CountingViews())

    assert (scopes, watchers) == ({}, 0)


def test_a_failing_computation_tells_the_watchers_and_keeps_serving():
    watcher = RecordingWatcher()

    async def scenario(hub):
        await hub.watch(Scope("ams", "1h"), watcher)
        # The computation runs in a thread: wait for its outcome rather than a fixed time (a
        # loaded machine took longer than 0.1 s), then a moment more for any frame too many.
        deadline = time.monotonic() + 5
        while not watcher.frames and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)

    hub_run(scenario, view_build=CountingViews(fail=True))

    assert watcher.frames == [
        {"type": "degraded", "message": "update failed: database unreachable"}
    ]


def test_an_announcement_through_redis_reaches_the_hub():
    # given a hub listening on the real Redis
    views = CountingViews()
    watcher = RecordingWatcher()

    async def scenario(hub):
        await hub.watch(Scope("ams", "1h"), watcher)
        await asyncio.wait_for(hub.listening.wait(), timeout=5)
        await asyncio.sleep(0.3)
        # when a writer announces a change (synchronously, as a worker does)
        await asyncio.to_thread(scopes_changed_announce, site_codes=["ams"])
        await asyncio.sleep(0.5)

    hub_run(scenario, view_build=views)

    # then the scope was recomputed and sent
    assert len(views.calls) == 2
    assert len(watcher.frames) == 2


def test_a_hub_hears_only_the_groups_of_the_scopes_it_watches():
    # given two hubs (as two Daphne processes), one watching ams, the other rtm
    heard = {"ams": [], "rtm": []}

    class ListeningHub(DashboardHub):
        def __init__(self, name):
            super().__init__(view_build=CountingViews())
            self.name = name

        def announcement_handle(self, kind, site_codes):
            heard[self.name].append((kind, site_codes))
            super().announcement_handle(kind, site_codes)

    async def main():
        hubs = {name: ListeningHub(name) for name in heard}
        try:
            for name, hub in hubs.items():
                await hub.watch(Scope(name, "1h"), RecordingWatcher())
                await asyncio.wait_for(hub.listening.wait(), timeout=5)
            # when a writer announces a change at ams, then an alert for every scope
            await asyncio.to_thread(scopes_changed_announce, site_codes=["ams"])
            await asyncio.to_thread(alerts_changed_announce, site_codes=None)
            await asyncio.sleep(0.5)
        finally:
            for hub in hubs.values():
                await hub.close()

    asyncio.run(main())

    # then only the ams hub heard the ams change (through the ams scope's group); both heard the
    # change that concerns every scope
    assert heard == {
        "ams": [(KIND_SCOPES, ["ams"]), (KIND_ALERTS, None)],
        "rtm": [(KIND_ALERTS, None)],
    }


def test_a_view_frame_says_when_its_change_was_announced_heard_and_computed():
    # given a hub watching ams through the real channel layer
    watcher = RecordingWatcher()

    async def main():
        hub = DashboardHub(view_build=CountingViews())
        try:
            await hub.watch(Scope("ams", "1h"), watcher)
            await asyncio.wait_for(hub.listening.wait(), timeout=5)
            await asyncio.sleep(0.3)  # past the coalescing interval of the first view
            # when a writer announces a change at ams
            before = time.time()
            await asyncio.to_thread(scopes_changed_announce, site_codes=["ams"])
            for _ in range(100):
                if len(watcher.frames) == 2:
                    break
                await asyncio.sleep(0.02)
        finally:
            await hub.close()
        return before

    before = asyncio.run(main())

    # then the first view (asked for by the watcher, not announced) has no announcement time,
    # and the view the change caused gives each step, in order, after the writer's call
    first, second = (frame["timing"] for frame in watcher.frames)
    assert first["announced"] is None
    assert first["heard"] <= first["started"] <= first["computed"]
    assert before <= second["announced"] <= second["heard"] <= second["started"]
    assert second["started"] <= second["computed"] <= time.time()
    assert second["cpu"] >= 0


def test_an_announcement_without_redis_is_logged_not_raised(settings, caplog):
    # The writer's transaction is already committed: failing it now would help no one.
    layers = {"default": {**settings.CHANNEL_LAYERS["default"]}}
    layers["default"]["CONFIG"] = {"hosts": ["redis://127.0.0.1:1/3"]}  # nothing on port 1
    settings.CHANNEL_LAYERS = layers

    scopes_changed_announce(site_codes=["ams"])

    assert "could not announce scopes change for sites ['ams']" in caplog.text


class SlowViews(CountingViews):
    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = seconds
        self.ends: list[float] = []

    def __call__(self, scope: Scope) -> dict:
        payload = super().__call__(scope)
        # CPU, not sleep: the interval follows the CPU an update costs, not its wall time
        spent = time.thread_time() + self.seconds
        while time.thread_time() < spent:
            pass
        self.ends.append(time.monotonic())
        return payload


@pytest.mark.parametrize(
    ("view_seconds", "shortest_gap", "longest_gap"),
    [
        (0.0, 0.19, 0.4),  # a cheap view: the floor, 200 ms (at most 5 per second)
        (0.12, 0.59, 0.75),  # 120 ms: five times its cost, 600 ms
        (0.3, 0.99, 1.2),  # 300 ms: the ceiling, 1 s
    ],
)
def test_the_interval_adapts_to_what_the_last_update_cost(
    settings, view_seconds, shortest_gap, longest_gap
):
    # given the default, adaptive coalescing, and a view that takes view_seconds of CPU
    settings.DASHBOARD_COALESCE_MS = None
    settings.DASHBOARD_COALESCE_MIN_MS, settings.DASHBOARD_COALESCE_MAX_MS = 200, 1000
    views = SlowViews(view_seconds)
    scope = Scope(site="ams", window="1h")

    async def scenario(hub):
        await hub.watch(scope, RecordingWatcher())
        # when changes keep coming every 20 ms for 3 s
        for _ in range(150):
            hub.announcement_handle(KIND_SCOPES, ["ams"])
            await asyncio.sleep(0.02)

    hub_run(scenario, view_build=views)

    # then computations start five times their CPU cost apart, within 200 ms..1 s (on a loaded
    # machine a computation may take longer than that: the next then starts when it ends)
    starts = [started for _, started in views.calls]
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    idle = [start - end for start, end in zip(starts[1:], views.ends, strict=False)]
    assert len(gaps) >= 2, gaps
    assert min(gaps) >= shortest_gap, gaps
    assert statistics.median(idle) <= longest_gap, (gaps, idle)
