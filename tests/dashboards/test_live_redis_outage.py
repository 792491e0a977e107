"""A dashboard hub whose Redis goes away and comes back: it closes its watchers as "server
unavailable" (their numbers could no longer change) and refuses new ones meanwhile; when Redis
is back it rejoins its groups, a reconnecting watcher is resynced, and announcements are heard
again."""

import asyncio
import json
import time

import pytest

from dashboards.broadcasts import scope_group, scopes_changed_announce
from dashboards.live import DashboardHub
from dashboards.panels import Scope
from tests.processes import RedisServer, free_port


class RecordingWatcher:
    def __init__(self):
        self.frames: list[dict] = []
        self.unavailable_closes = 0

    async def frame_send(self, frame: str) -> None:
        self.frames.append(json.loads(frame))

    async def unavailable_close(self) -> None:
        self.unavailable_closes += 1


def view_build(scope: Scope) -> dict:
    return {"type": "view", "scope": scope.key, "html": "", "charts": {}}


async def until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        await asyncio.sleep(0.05)


@pytest.mark.slow
def test_a_hub_that_loses_redis_closes_its_watchers_then_rejoins_and_hears_announcements(
    settings,
):
    # given a hub watching ams through a channel layer on a Redis of the test's own
    port = free_port()
    layer = settings.CHANNEL_LAYERS["default"]
    settings.CHANNEL_LAYERS = {
        "default": {
            **layer,
            "CONFIG": {**layer["CONFIG"], "hosts": [{"address": f"redis://127.0.0.1:{port}/1"}]},
        }
    }
    settings.DASHBOARD_COALESCE_MS = 50
    settings.DASHBOARD_REFRESH_S = 3600
    server = RedisServer(port)
    server.start()
    watcher = RecordingWatcher()

    async def scenario(hub):
        await hub.watch(Scope("ams", "1h"), watcher)
        await asyncio.wait_for(hub.listening.wait(), timeout=10)
        await until(lambda: len(watcher.frames) == 1, 10, "the first view")

        # when Redis goes away
        await asyncio.to_thread(server.stop)
        await until(lambda: not hub.listening.is_set(), 30, "the hub noticed the outage")
        # then its watcher is closed as unavailable, and one connecting meanwhile is refused
        await until(lambda: watcher.unavailable_closes == 1, 10, "the watcher closed")
        latecomer = RecordingWatcher()
        await hub.watch(Scope("ams", "1h"), latecomer)
        assert (latecomer.unavailable_closes, latecomer.frames) == (1, [])
        frames_in_outage = len(watcher.frames)

        # and when it comes back
        await asyncio.to_thread(server.start)
        await asyncio.wait_for(hub.listening.wait(), timeout=60)

        # then the hub has rejoined the scope's group and a reconnecting watcher is resynced
        assert scope_group("ams") in hub.groups_joined
        await hub.watch(Scope("ams", "1h"), watcher)
        await until(lambda: len(watcher.frames) > frames_in_outage, 10, "a resync frame")
        resynced = len(watcher.frames)

        # and an announcement sent through the new Redis reaches the watcher
        await asyncio.sleep(0.2)
        await asyncio.to_thread(scopes_changed_announce, site_codes=["ams"])
        await until(lambda: len(watcher.frames) > resynced, 20, "the announced change")
        return frames_in_outage, resynced

    async def main():
        hub = DashboardHub(view_build=view_build)
        try:
            return await scenario(hub)
        finally:
            await hub.close()

    try:
        frames_in_outage, resynced = asyncio.run(main())
    finally:
        server.stop()
    assert frames_in_outage == 1
    assert resynced == 2
    assert all(frame["scope"] == Scope("ams", "1h").key for frame in watcher.frames)
