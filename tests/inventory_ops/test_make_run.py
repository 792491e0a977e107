"""`make run` on a machine without Redis: from a clean clone, with no `redis-server` on the PATH
and nothing listening where Redis is looked for, it starts its embedded Redis server and the
whole demo works; Ctrl-C leaves no process of it behind.

How the clone is made and run (the virtualenv reused through a symlink, its own SQLite
database and ports): tests/make_run.py.
"""

import asyncio
import json
import re
import shutil
import time
import urllib.request
import uuid
from datetime import UTC, datetime

import pytest
import websockets

from tests.make_run import clean_clone, demo_login, make_run, nothing_listens, path_without_redis
from tests.processes import wait_for_http

pytestmark = [pytest.mark.slow, pytest.mark.once]

# `make run` promises a live demo within a minute on a newcomer's idle machine; under make test
# the other run's browsers and servers share the two cores, so the clone gets three minutes to
# answer /healthz, then LIVE_S for the test's own steps (two manage.py commands, a login, one
# event through the worker to the socket).
DEADLINE_S = 180
LIVE_S = 90
SITE, SKU, QTY = "embed-check", "EMBED-1", 7


def feed_post(base_url: str, token: str, events: list[dict]) -> dict:
    request = urllib.request.Request(  # noqa: S310 (a local URL)
        f"{base_url}/api/ingest/events",
        data=json.dumps({"events": events}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (local URL)
        return {"status": response.status, **json.loads(response.read())}


def batch_done_wait(base_url: str, token: str, batch_id: str, deadline: float) -> dict:
    request = urllib.request.Request(  # noqa: S310 (a local URL)
        f"{base_url}/api/ingest/batches/{batch_id}", headers={"Authorization": f"Bearer {token}"}
    )
    report = {}
    while time.monotonic() < deadline:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (local URL)
            report = json.loads(response.read())
        if report["status"] == "done":
            return report
        time.sleep(0.2)
    return report


async def post_and_watch(base_url: str, cookie: str, token: str, deadline: float) -> tuple:
    """Watch the site's dashboard, post one receipt of QTY, and wait until the worker has
    applied it and the dashboard shows it. Return (batch report, the cell seen on the socket)."""
    url = base_url.replace("http://", "ws://") + f"/ws/dashboard/?site={SITE}"
    cell = re.compile(rf'data-stock-on-hand="{SITE}/{SKU}">(-?\d+)<')
    async with websockets.connect(
        url, origin=base_url, additional_headers={"Cookie": cookie}, max_size=None
    ) as socket:
        first = json.loads(await asyncio.wait_for(socket.recv(), timeout=60))
        assert first["type"] == "view"
        event = {
            "event_id": f"embed-{uuid.uuid4()}",
            "type": "stock.received",
            "occurred_at": datetime.now(UTC).isoformat(),
            "site": SITE,
            "sku": SKU,
            "qty": QTY,
        }
        accepted = await asyncio.to_thread(feed_post, base_url, token, [event])
        assert accepted["status"] == 202
        report = await asyncio.to_thread(
            batch_done_wait, base_url, token, accepted["batch_id"], deadline
        )
        shown = None
        while shown != str(QTY) and time.monotonic() < deadline:
            try:
                frame = json.loads(
                    await asyncio.wait_for(socket.recv(), timeout=deadline - time.monotonic())
                )
            except TimeoutError:
                break
            match = cell.search(frame.get("html", ""))
            shown = match.group(1) if match else shown
        return report, shown


@pytest.mark.timeout(DEADLINE_S + LIVE_S + 180)
def test_make_run_without_redis_serves_the_live_demo_on_its_embedded_server_until_ctrl_c(tmp_path):
    # given a clean clone, a PATH without redis-server, and nothing on the Redis port it is given
    clone = clean_clone(tmp_path / "clone")
    path = path_without_redis(tmp_path / "bin")
    assert shutil.which("redis-server", path=path) is None

    with make_run(clone, path=path, log_name="make-run-without-redis") as run:
        assert nothing_listens(run.redis_port)
        run.start()
        deadline = run.started + DEADLINE_S
        # when the demo is up: a site and SKU of the test's own (the simulator, started
        # before, does not feed them), a feed source, a logged-in demo user
        wait_for_http(f"{run.base_url}/healthz", timeout=deadline - time.monotonic())
        healthy_after = time.monotonic() - run.started
        live_deadline = time.monotonic() + LIVE_S
        running = run.processes()
        (tmp_path / "sites.csv").write_text(f"code,name\n{SITE},Embedded Redis check\n")
        (tmp_path / "skus.csv").write_text(f"code,name,unit_cost\n{SKU},Check item,1.00\n")
        run.manage_py(
            *("import_catalog", "--sites", str(tmp_path / "sites.csv")),
            *("--skus", str(tmp_path / "skus.csv")),
        )
        token = run.manage_py("create_feed_source", "embed-check").split()[-1]
        cookie = demo_login(run)
        # and a feed POST goes in while a dashboard socket watches
        report, shown = asyncio.run(post_and_watch(run.base_url, cookie, token, live_deadline))
        live_after = time.monotonic() - run.started
        # and then Ctrl-C reaches make's process group, as a terminal sends it
        run.ctrl_c()
        left = run.processes_gone_wait()
        output = run.output()

    # then the embedded server served the run, and the demo was live within the deadline
    assert "starting the embedded Redis server" in output
    assert any("valkey-server" in command for _, command in running), running
    timings = f"healthy after {healthy_after:.0f} s, live after {live_after:.0f} s"
    assert healthy_after < DEADLINE_S
    assert (report["status"], report["applied"]) == ("done", 1), (report, timings)
    assert shown == str(QTY), (
        f"the dashboard socket never showed the applied receipt ({timings}); "
        f"the end of make run's output:\n{output[-3000:]}"
    )
    assert live_after < DEADLINE_S + LIVE_S, timings
    # and Ctrl-C stopped every process of it, the Redis server last, its data kept under var/
    assert left == [], left
    assert nothing_listens(run.port)
    assert nothing_listens(run.redis_port)
    assert "Redis: stopped the embedded Redis server" in output
    assert (clone / "var" / "redis" / "embedded" / "dump.rdb").exists()
