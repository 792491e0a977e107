"""Start the project's real processes (Daphne, RQ workers, commands) from tests.

Use with `@pytest.mark.django_db(transaction=True)` so the rows a test writes are committed and
the child process, connected to the same test database, sees them.
"""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager, suppress
from pathlib import Path

from django.conf import settings
from django.db import connection

BASE_DIR = Path(__file__).resolve().parent.parent

# Debian's Chromium, never a downloaded browser. Without the background-networking flags it
# keeps trying to reach Google's hosts, which this machine's closed network refuses.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_database_url() -> str:
    """The URL of the database the tests run against (the test database, not the dev one)."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = db["USER"] or "postgres"
    password = f":{db['PASSWORD']}" if db["PASSWORD"] else ""
    host, port = db["HOST"] or "127.0.0.1", db["PORT"] or 5432
    return f"postgres://{user}{password}@{host}:{port}/{db['NAME']}"


def subprocess_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": test_database_url(),
            "REDIS_URL": settings.REDIS_URL,
            "DJANGO_SETTINGS_MODULE": "inventory_ops.settings",
            # The same key as this process: sessions made here are valid there.
            "SECRET_KEY": settings.SECRET_KEY,
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


def start_process(args: list[str], *, env: dict[str, str] | None = None, log_name: str = "proc"):
    """Start a child in its own process group, its output in var/test-logs/<log_name>.log."""
    log_dir = BASE_DIR / "var" / "test-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log = open(log_dir / f"{log_name}.log", "wb")  # noqa: SIM115 (closed in stop_process)
    process = subprocess.Popen(
        args,
        cwd=BASE_DIR,
        env=env or subprocess_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    process.log_file = log
    return process


def stop_process(process, sig=signal.SIGTERM, timeout: float = 10) -> None:
    if process.poll() is None:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=timeout)
    process.log_file.close()


def manage_py(*args: str) -> list[str]:
    return [sys.executable, str(BASE_DIR / "manage.py"), *args]


def wait_for_http(url: str, timeout: float = 30, expect_status: int | None = 200) -> int:
    """Poll `url` until it answers (with `expect_status`, if given); return the status."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (local URL)
                status = response.status
        except urllib.error.HTTPError as error:
            status = error.code
        except OSError as error:
            last_error = error
            time.sleep(0.1)
            continue
        if expect_status is None or status == expect_status:
            return status
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer {expect_status} within {timeout}s ({last_error})")


@contextmanager
def running(args: list[str], *, env=None, log_name: str = "proc"):
    process = start_process(args, env=env, log_name=log_name)
    try:
        yield process
    finally:
        stop_process(process)


@contextmanager
def daphne_server(port: int | None = None, *, env=None):
    """Run the real ASGI app under Daphne; yield the process once /healthz answers.

    `process.base_url` is where it listens.
    """
    port = port or free_port()
    args = [
        *(sys.executable, "-m", "daphne"),
        *("--bind", "127.0.0.1", "--port", str(port)),
        "inventory_ops.asgi:application",
    ]
    with running(args, env=env, log_name=f"daphne-{port}") as process:
        process.base_url = f"http://127.0.0.1:{port}"
        wait_for_http(f"{process.base_url}/healthz", timeout=30)
        yield process


@contextmanager
def rq_worker(*queues: str, env=None, log_name: str = "rqworker"):
    """Run a real RQ worker process, as the Procfile's `worker` line does."""
    args = manage_py(
        "rqworker", *(queues or ("ingest", "default")), "--worker-class", "rq.worker.SimpleWorker"
    )
    with running(args, env=env, log_name=log_name) as process:
        worker_registered_wait(process.pid)
        yield process


def worker_registered_wait(pid: int, timeout: float = 30) -> None:
    """Wait until the worker process `pid` has registered in Redis, so it is taking jobs.

    Without this a test that times "posted to applied" would also time the worker's start.
    """
    import redis
    from rq import Worker

    connection = redis.Redis.from_url(settings.REDIS_URL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(worker.pid == pid for worker in Worker.all(connection=connection)):
            return
        time.sleep(0.1)
    raise TimeoutError(f"RQ worker {pid} did not register within {timeout}s")


class RedisServer:
    """A redis-server of the test's own on `port` (default: a free one), to stop or kill and
    start again (an outage). Without persistence: a restart loses everything, as a failover to
    a fresh replica or a crash without a dump would."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.process = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        import redis

        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                redis.Redis(port=self.port).ping()
                return
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)

    def kill(self) -> None:
        """Die at once (SIGKILL): clients see their connections reset."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=20)
