"""Start the project's real processes (Daphne, RQ workers, commands) from tests.

Use with `@pytest.mark.django_db(transaction=True)` so the rows a test writes are committed and
the child process, connected to the same test database, sees them.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
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


def test_log_dir() -> Path:
    """Where this test process's children write their logs: var/test-logs/<database>[-<worker>].

    The PostgreSQL and SQLite runs of `make test` run at the same time, each perhaps in several
    pytest-xdist workers, and start children under the same log names; tests read those logs
    (`log_wait`), so each run keeps its own folder rather than overwrite another's.
    """
    run = "-".join(filter(None, [connection.vendor, os.environ.get("PYTEST_XDIST_WORKER")]))
    log_dir = BASE_DIR / "var" / "test-logs" / run
    log_dir.mkdir(parents=True, exist_ok=True)
    return log_dir


def start_process(args: list[str], *, env: dict[str, str] | None = None, log_name: str = "proc"):
    """Start a child in its own process group, its output in var/test-logs/<run>/<log_name>.log."""
    log = open(test_log_dir() / f"{log_name}.log", "wb")  # noqa: SIM115 (closed in stop_process)
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


NGINX = "/usr/sbin/nginx"
NGINX_SITE_CONFIG = BASE_DIR / "deploy" / "nginx" / "default.conf"


def nginx_install() -> str:
    """Debian's nginx, installed if missing as scripts/test-services does (root, apt-get)."""
    if not os.path.exists(NGINX):
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            raise RuntimeError(f"{NGINX} is missing: sudo apt-get install nginx")
        subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "nginx"],
            check=True,
            capture_output=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
    return NGINX


class NginxProxy:
    """Debian's nginx with the shipped site configuration (deploy/nginx/default.conf) in front
    of web processes on this machine: its upstream servers become `upstream_ports`, it listens
    on a free port. Its own directory for configuration, logs and temporary files.

    The access log says which upstream served each request (`requests()`), and every response
    names it in an `X-Upstream` header, a WebSocket handshake's too."""

    def __init__(self, upstream_ports: list[int]) -> None:
        self.upstream_ports = upstream_ports
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.directory = Path(tempfile.mkdtemp(prefix="io-nginx-"))
        self.process = None

    def _site_config(self) -> str:
        site = NGINX_SITE_CONFIG.read_text()
        servers = re.findall(r"^\s*server web-\d+:8000 (.*);$", site, flags=re.MULTILINE)
        assert servers, "no `server web-N:8000 ...;` line in deploy/nginx/default.conf"
        options = servers[0]
        ours = "".join(f"    server 127.0.0.1:{port} {options};\n" for port in self.upstream_ports)
        site = re.sub(r"(^\s*server web-\d+:8000 .*;\n)+", ours, site, flags=re.MULTILINE)
        site, listens = re.subn(
            r"^(\s*)listen \d+;$", rf"\1listen 127.0.0.1:{self.port};", site, flags=re.MULTILINE
        )
        assert listens == 1, "deploy/nginx/default.conf should have one `listen PORT;`"
        return site

    def start(self) -> None:
        directory = self.directory
        (directory / "site.conf").write_text(self._site_config())
        # As the nginx image's own nginx.conf does: the site's file included inside `http`.
        (directory / "nginx.conf").write_text(
            f"""
{"user root;" if os.geteuid() == 0 else ""}
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log info;
events {{ worker_connections 1024; }}
http {{
    log_format upstreams '$request_method $uri $status $upstream_addr';
    access_log {directory}/access.log upstreams;
    add_header X-Upstream $upstream_addr always;
    client_body_temp_path {directory}/client_body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
    include {directory}/site.conf;
}}
"""
        )
        self.process = start_process(
            [
                nginx_install(),
                *("-p", str(directory), "-c", str(directory / "nginx.conf")),
                *("-e", str(directory / "error.log"), "-g", "daemon off;"),
            ],
            env=dict(os.environ),
            log_name=f"nginx-{self.port}",
        )
        deadline = time.monotonic() + 20
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not start: {self.error_log()}")
            time.sleep(0.05)

    def error_log(self) -> str:
        path = self.directory / "error.log"
        return path.read_text() if path.exists() else ""

    def requests(self) -> list[tuple[str, str, int, str]]:
        """(method, path, status, upstream address) of every request nginx finished."""
        path = self.directory / "access.log"
        lines = path.read_text().splitlines() if path.exists() else []
        return [
            (method, uri, int(status), upstream)
            for method, uri, status, upstream in (line.split(" ", 3) for line in lines)
        ]

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
        shutil.rmtree(self.directory, ignore_errors=True)
