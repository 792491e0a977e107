"""Time from `make run` to a live dashboard, from a clean clone, with and without Redis.

    .venv/bin/python -m bench.make_run_start [--runs 3] [--modes embedded system running]

Each run clones this checkout's committed state into a temporary folder and starts `make run`
there with its own ports and a fresh SQLite database (tests/make_run.py: the virtualenv is
linked in, so `setup` installs nothing). From the moment `make run` starts it records:
- serving: /healthz answers;
- dashboard: a demo user, logged in through the form, has the first dashboard view (all sites)
  on its WebSocket;
- live: that socket has had the first view caused by an announced change (the simulator's
  events, applied by the worker, announced through Redis);
then Ctrl-C (SIGINT to make's process group) and how long until make has exited. Before the
runs, it times the Redis step alone: each server binary started as `make run` starts it, until
it answers PING, then stopped (medians of five).

Modes:
- embedded: no `redis-server` on the PATH, nothing on the Redis port: the embedded server;
- system: the system's `redis-server` on the PATH, nothing on the Redis port: `make run`
  starts it;
- running: a `redis-server` already answers on the Redis port: `make run` only uses it.
"""

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import websockets

from scripts.with_redis import embedded_server_path, redis_answers
from tests.make_run import clean_clone, demo_login, make_run, path_without_redis
from tests.processes import free_port, wait_for_http

MODES = ("embedded", "system", "running")
FIGURES = ("serving", "dashboard", "live", "stopped")
TIMEOUT_S = 300


async def dashboard_live_wait(base_url: str, cookie: str, started: float) -> tuple[float, float]:
    """Seconds since `started` to the first view on the socket and to the first view that an
    announced change caused."""
    url = base_url.replace("http://", "ws://") + "/ws/dashboard/"
    async with websockets.connect(
        url, origin=base_url, additional_headers={"Cookie": cookie}, max_size=None
    ) as socket:
        first_view = None
        while True:
            frame = json.loads(await asyncio.wait_for(socket.recv(), timeout=TIMEOUT_S))
            if frame.get("type") != "view":
                continue
            now = time.monotonic() - started
            first_view = first_view if first_view is not None else now
            if (frame.get("timing") or {}).get("announced") is not None:
                return first_view, now


@contextmanager
def redis_answering(port: int):
    """A throwaway system redis-server on `port`, for the `running` mode."""
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        redis_wait(port)
        yield server
    finally:
        server.terminate()
        server.wait(timeout=30)


def server_start_seconds(binary: str, workdir: Path) -> tuple[float, float]:
    """(seconds until a fresh server answers PING, seconds until it has stopped on SIGTERM)."""
    port = free_port()
    started = time.monotonic()
    server = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
    )
    redis_wait(port)
    answered = time.monotonic() - started
    stopping = time.monotonic()
    server.terminate()
    server.wait(timeout=30)
    return answered, time.monotonic() - stopping


def run_once(mode: str, workdir: Path) -> dict:
    clone = clean_clone(workdir / "clone")
    path = path_without_redis(workdir / "bin") if mode == "embedded" else os.environ["PATH"]
    with (
        make_run(clone, path=path, log_name=f"bench-make-run-{mode}") as run,
        redis_answering(run.redis_port) if mode == "running" else nullcontext() as server,
    ):
        run.start()
        wait_for_http(f"{run.base_url}/healthz", timeout=TIMEOUT_S)
        serving = time.monotonic() - run.started
        cookie = demo_login(run)
        dashboard, live = asyncio.run(dashboard_live_wait(run.base_url, cookie, run.started))
        stopping = time.monotonic()
        run.ctrl_c()
        stopped = time.monotonic() - stopping
        # The server of the `running` mode is not make run's: it is meant to outlive it.
        left = run.processes_gone_wait(besides=frozenset({server.pid} if server else ()))
        redis_line = next(
            (line for line in run.output().splitlines() if line.startswith("Redis: ")), ""
        )
    return {
        "serving": serving,
        "dashboard": dashboard,
        "live": live,
        "stopped": stopped,
        "left": len(left),
        "redis": redis_line,
    }


def redis_wait(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if redis_answers(f"redis://127.0.0.1:{port}/0"):
            return
        time.sleep(0.01)
    raise TimeoutError(f"no Redis server answered on port {port}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    args = parser.parse_args()
    if set(args.modes) - {"embedded"} and not shutil.which("redis-server"):
        sys.exit("the system and running modes need redis-server on the PATH")
    results: dict[str, list[dict]] = {mode: [] for mode in args.modes}
    print(f"load average at the start: {os.getloadavg()[0]:.2f}")
    binaries = {"embedded": str(embedded_server_path()), "system": shutil.which("redis-server")}
    for name, binary in binaries.items():
        if binary:
            with tempfile.TemporaryDirectory() as workdir:
                times = [server_start_seconds(binary, Path(workdir)) for _ in range(5)]
            print(
                f"{name} server alone ({binary}): answers after "
                f"{statistics.median(t[0] for t in times) * 1000:.0f} ms, stops in "
                f"{statistics.median(t[1] for t in times) * 1000:.0f} ms (medians of 5)"
            )
    # Modes in alternation, so that a change in the machine's load falls on all of them.
    for number in range(1, args.runs + 1):
        for mode in args.modes:
            with tempfile.TemporaryDirectory(prefix="make-run-bench-") as workdir:
                result = run_once(mode, Path(workdir))
            results[mode].append(result)
            print(
                f"{mode:<9} run {number}: serving {result['serving']:5.1f} s, dashboard "
                f"{result['dashboard']:5.1f} s, live {result['live']:5.1f} s; Ctrl-C to exit "
                f"{result['stopped']:4.1f} s, processes left {result['left']} "
                f"(load {os.getloadavg()[0]:.2f})",
                flush=True,
            )
            print(f"          {result['redis']}", flush=True)
    print("medians (s): serving / dashboard / live / Ctrl-C to exit")
    for mode, runs in results.items():
        medians = [statistics.median(run[key] for run in runs) for key in FIGURES]
        print(f"  {mode:<9} " + " / ".join(f"{value:.1f}" for value in medians))
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
