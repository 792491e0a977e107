"""The product behind its reverse proxy, as deploy/ runs it: Debian's nginx with
deploy/nginx/default.conf in front of 1, then 2 web processes (the Procfile's web line, DEBUG off,
collected static files), 2 workers, one PostgreSQL and one Redis.

For each number of web processes it measures, through the proxy:

- the dashboard's first load in Chromium with an empty cache: bytes transferred and the time
  from navigation to "Live" (the first live view over the WebSocket), median of --loads;
- requests per second for --seconds with --clients keep-alive connections: `GET /api/kpis`
  (a reader), and `POST /api/ingest/events` with 100-event batches (a feed: accepted, stored,
  queued; the workers apply them meanwhile).

    REDIS_URL=redis://127.0.0.1:6379/1 flock /tmp/bench.lock .venv/bin/python -m bench.proxy_bench

The database is BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/io_proxy_bench),
dropped and created anew. The load generator shares the machine's cores with the servers.
"""

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

os.environ.setdefault("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/io_proxy_bench")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "inventory_ops.settings")

from bench.ingest_stack import BASE_DIR, database_recreate, free_port
from bench.server_env import settings_line
from tests.faults.stack import procfile_command
from tests.processes import (
    CHROMIUM,
    CHROMIUM_ARGS,
    NginxProxy,
    start_process,
    stop_process,
    wait_for_http,
)

SITES = [f"s{n}" for n in range(1, 5)]
SKUS = [f"k{n}" for n in range(1, 51)]
USERNAME, PASSWORD = "bench-manager", "bench-password-1"
BATCH_EVENTS = 100


def server_env() -> dict[str, str]:
    """The environment of the servers: this one, quiet logs, the Procfile's `daphne` and
    `python` found in this virtualenv as `make run` finds them."""
    path = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"
    return dict(os.environ, PYTHONUNBUFFERED="1", LOG_LEVEL="WARNING", PATH=path)


def manage(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


def catalog_load(directory: Path) -> str:
    """Sites, SKUs, a manager who logs in; return a feed source's token."""
    (directory / "sites.csv").write_text("code,name\n" + "".join(f"{s},{s}\n" for s in SITES))
    (directory / "skus.csv").write_text(
        "code,name,unit_cost\n" + "".join(f"{k},{k},2.50\n" for k in SKUS)
    )
    manage(
        "import_catalog",
        "--sites",
        str(directory / "sites.csv"),
        "--skus",
        str(directory / "skus.csv"),
    )
    manage(
        "shell",
        "-c",
        "from django.contrib.auth import get_user_model\n"
        "from django.contrib.auth.models import Group\n"
        f"user = get_user_model().objects.create_user({USERNAME!r}, password={PASSWORD!r})\n"
        "user.groups.add(Group.objects.get(name='managers'))\n",
    )
    token = manage("create_feed_source", "bench-feed").strip().splitlines()[-1]
    # What the web processes can take, not the per-source limit (429 past 600 a minute).
    manage(
        "shell",
        "-c",
        "from ingest.models import FeedSource\n"
        "FeedSource.objects.filter(name='bench-feed').update(rate_limit_per_minute=10**9)\n",
    )
    return token


class BatchMaker:
    """Receipts with ids never sent before, as a busy feed sends them."""

    def __init__(self) -> None:
        self._next = 0
        self._lock = threading.Lock()

    def body(self) -> bytes:
        with self._lock:
            first, self._next = self._next, self._next + BATCH_EVENTS
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60))
        events = [
            {
                "event_id": f"e{n}",
                "type": "stock.received",
                "occurred_at": at,
                "site": SITES[n % len(SITES)],
                "sku": SKUS[n % len(SKUS)],
                "qty": 1 + n % 5,
            }
            for n in range(first, first + BATCH_EVENTS)
        ]
        return json.dumps({"events": events}).encode()


def requests_per_second(port: int, seconds: float, clients: int, request) -> tuple[float, dict]:
    """Run `request(connection)` (returns a status) on `clients` keep-alive connections for
    `seconds`; return requests/s and the statuses counted."""
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        counted: dict[int, int] = {}
        while time.monotonic() < stop_at:
            try:
                status = request(connection)
            except (OSError, http.client.HTTPException):
                connection.close()
                status = 0
            counted[status] = counted.get(status, 0) + 1
        with lock:
            for status, count in counted.items():
                statuses[status] = statuses.get(status, 0) + count

    started = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(statuses.values()) / (time.monotonic() - started), statuses


def kpis_get(token: str):
    def request(connection) -> int:
        connection.request(
            "GET", "/api/kpis?window=1h", headers={"Authorization": f"Bearer {token}"}
        )
        response = connection.getresponse()
        response.read()
        return response.status

    return request


def batch_post(token: str, batches: BatchMaker):
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def request(connection) -> int:
        connection.request("POST", "/api/ingest/events", body=batches.body(), headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status

    return request


def first_loads(base_url: str, loads: int) -> list[tuple[int, float]]:
    """(bytes transferred, seconds from navigation to live) of `loads` first loads."""
    from playwright.sync_api import sync_playwright

    results = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        login = browser.new_context()
        page = login.new_page()
        page.goto(f"{base_url}/accounts/login/")
        page.fill("#id_username", USERNAME)
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{base_url}/")
        session = login.storage_state()
        for _ in range(loads):
            # A new context has an empty cache: only the session cookie is carried over.
            context = browser.new_context(
                storage_state=session, viewport={"width": 1366, "height": 768}
            )
            page = context.new_page()
            started = time.monotonic()
            page.goto(f"{base_url}/")
            page.wait_for_function(
                "() => document.querySelector('[data-live-state]').dataset.liveState === 'live'",
                timeout=30_000,
            )
            seconds = time.monotonic() - started
            transferred = page.evaluate(
                """() => [...performance.getEntriesByType('navigation'),
                          ...performance.getEntriesByType('resource')]
                         .reduce((sum, entry) => sum + entry.transferSize, 0)"""
            )
            results.append((transferred, seconds))
            context.close()
        browser.close()
    return results


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU time the processes have used so far (Linux)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def batches_pending() -> int:
    import psycopg

    with psycopg.connect(os.environ["DATABASE_URL"]) as connection:
        ((count,),) = connection.execute(
            "SELECT count(*) FROM ingest_ingestbatch WHERE status <> 'done'"
        ).fetchall()
    return count


@contextmanager
def web_processes(count: int):
    """`count` web processes from the Procfile's web line and nginx in front; yield the proxy
    and the web processes' pids."""
    with ExitStack() as stack:
        ports, pids = [free_port() for _ in range(count)], []
        for number, port in enumerate(ports, 1):
            process = start_process(
                procfile_command("web", PORT=str(port)),
                env=server_env(),
                log_name=f"proxy-bench-web-{number}",
            )
            stack.callback(stop_process, process)
            wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=60)
            pids.append(process.pid)
        proxy = NginxProxy(ports)
        proxy.start()
        stack.callback(proxy.stop)
        yield proxy, pids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15, help="each load run (default 15)")
    parser.add_argument("--clients", type=int, default=16, help="connections (default 16)")
    parser.add_argument("--loads", type=int, default=5, help="first loads (default 5)")
    options = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="io-proxy-bench-"))
    os.environ["STATIC_ROOT"] = str(work / "static")
    database_recreate()
    started = time.monotonic()
    manage("collectstatic", "--noinput", "-v", "0")
    print(f"collectstatic: {time.monotonic() - started:.0f} s", flush=True)
    token = catalog_load(work)
    batches = BatchMaker()
    workers = [
        start_process(
            procfile_command("worker"), env=server_env(), log_name=f"proxy-bench-worker-{n}"
        )
        for n in (1, 2)
    ]
    print(f"{settings_line()}; 2 workers; load average {os.getloadavg()[0]:.1f}", flush=True)
    worker_pids = [worker.pid for worker in workers]
    try:
        for count in (1, 2):
            with web_processes(count) as (proxy, web_pids):
                # stock to show, and warm caches and connection pools
                requests_per_second(proxy.port, 3, 4, batch_post(token, batches))
                requests_per_second(proxy.port, 2, 4, kpis_get(token))
                while batches_pending():
                    time.sleep(0.5)
                loads = first_loads(proxy.base_url, options.loads)
                web_cpu = cpu_seconds(web_pids)
                read_rate, read_statuses = requests_per_second(
                    proxy.port, options.seconds, options.clients, kpis_get(token)
                )
                read_cpu = cpu_seconds(web_pids) - web_cpu
                web_cpu, worker_cpu = cpu_seconds(web_pids), cpu_seconds(worker_pids)
                started = time.monotonic()
                post_rate, post_statuses = requests_per_second(
                    proxy.port, options.seconds, options.clients, batch_post(token, batches)
                )
                post_cpu = cpu_seconds(web_pids) - web_cpu
                while batches_pending():
                    time.sleep(0.2)
                applied_in = time.monotonic() - started
                worker_cpu = cpu_seconds(worker_pids) - worker_cpu
                served = {upstream for *_, upstream in proxy.requests()}
            reads, posts = read_statuses.get(200, 0), post_statuses.get(202, 0)
            print(
                f"{count} web: first load {statistics.median(b for b, _ in loads):,.0f} bytes, "
                f"live after {statistics.median(s for _, s in loads):.2f} s (median of "
                f"{len(loads)}: {', '.join(f'{s:.2f}' for _, s in loads)})\n"
                f"  GET /api/kpis {read_rate:.0f}/s {read_statuses}, "
                f"web CPU {read_cpu / reads * 1000:.2f} ms a request\n"
                f"  POST {BATCH_EVENTS}-event batches {post_rate:.0f}/s "
                f"({post_rate * BATCH_EVENTS:,.0f} events/s) {post_statuses}, "
                f"web CPU {post_cpu / posts * 1000:.2f} ms a batch; all applied "
                f"{applied_in:.1f} s after the first POST "
                f"({posts * BATCH_EVENTS / applied_in:,.0f} events/s), worker CPU "
                f"{worker_cpu / (posts * BATCH_EVENTS) * 1e6:.0f} us an event\n"
                f"  served by {sorted(served)}; load average {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    finally:
        for worker in workers:
            stop_process(worker)


if __name__ == "__main__":
    main()
