"""The whole product on servers of its own, to break on purpose: a PostgreSQL cluster and a Redis
server on free ports, the web process and workers started from their Procfile lines.

Nothing here goes through the test database or Django's ORM of the test process: the stack is
observed as a producer and an operator would, through the HTTP API, management commands run
against it, and plain SQL for what only the database can tell (attempts, statuses).
"""

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import suppress
from pathlib import Path

import psycopg

from tests.postgres_cluster import PostgresCluster
from tests.processes import BASE_DIR, RedisServer, free_port, start_process, stop_process

SITES = ("north", "south")
SKUS = ("A", "B", "C")
UNIT_COST = {"A": "2.00", "B": "3.50", "C": "10.00"}
# The password of the users `session_make` creates, to log in through a login form too.
PASSWORD = "pw-for-tests"


def procfile_command(name: str, **env: str) -> list[str]:
    """The Procfile line `name` as argv, `${VAR:-default}` and `$VAR` expanded from `env`."""
    for line in (BASE_DIR / "Procfile").read_text().splitlines():
        key, _, command = line.partition(":")
        if key.strip() == name:
            command = re.sub(
                r"\$\{(\w+):-([^}]*)\}|\$(\w+)",
                lambda m: env.get(m[1] or m[3], m[2] or ""),
                command,
            )
            argv = shlex.split(command)
            # `python` of the Procfile is this virtualenv's, as `make run` puts it on the PATH.
            return [sys.executable if argv[0] == "python" else argv[0], *argv[1:]]
    raise LookupError(f"no {name!r} line in the Procfile")


def http_status(url: str) -> int | None:
    """The status `url` answers a plain GET with; None if nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (local URL)
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


class Answer:
    def __init__(self, status: int | None, body: bytes, seconds: float, error: str = "") -> None:
        self.status, self.body, self.seconds, self.error = status, body, seconds, error

    def json(self):
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"<Answer {self.status} {self.body[:200]!r} {self.error} in {self.seconds:.1f}s>"


class Stack:
    """Own servers, one migrated database, a catalog and a feed source; processes on demand."""

    def __init__(self, *, name: str = "stack", **env: str) -> None:
        self.name = name
        self.pg = PostgresCluster()
        self.pg.start()
        self.database_url = self.pg.database_create("inventory_ops")
        self.redis = RedisServer()
        self.redis.start()
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis.url(),
            "PORT": str(self.port),
            "DJANGO_SETTINGS_MODULE": "inventory_ops.settings",
            "PYTHONUNBUFFERED": "1",
            "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
            "WORKER_HEARTBEAT_DIR": str(self.pg.directory / "heartbeats"),
            **env,
        }
        self.processes: dict[str, subprocess.Popen] = {}
        try:
            self._catalog_load()
        except BaseException:
            self.close()
            raise

    def _catalog_load(self) -> None:
        self.manage("migrate", "--noinput", "-v", "0")
        catalog = self.pg.directory / "catalog"
        catalog.mkdir()
        (catalog / "sites.csv").write_text("code,name\n" + "".join(f"{s},{s}\n" for s in SITES))
        (catalog / "skus.csv").write_text(
            "code,name,unit_cost\n" + "".join(f"{k},{k},{UNIT_COST[k]}\n" for k in SKUS)
        )
        self.manage(
            "import_catalog", "--sites", catalog / "sites.csv", "--skus", catalog / "skus.csv"
        )
        self.token = self.manage("create_feed_source", "faults-feed").strip().splitlines()[-1]

    # --- processes ----------------------------------------------------------------------------
    def manage(self, *args, check: bool = True, timeout: float = 300) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *map(str, args)],
            cwd=BASE_DIR,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"manage.py {args} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout if check else result

    def start(self, name: str, line: str, *, port: int | None = None) -> subprocess.Popen:
        """Start the Procfile line `line` as process `name` (its log in var/test-logs/), on
        `port` (default: the stack's)."""
        argv = procfile_command(line, PORT=str(port or self.port))
        process = start_process(argv, env=self.env, log_name=f"{self.name}-{name}")
        self.processes[name] = process
        return process

    def stop(self, name: str, sig=signal.SIGTERM) -> None:
        stop_process(self.processes.pop(name), sig=sig)

    def web_start(self, name: str = "web", *, port: int | None = None) -> subprocess.Popen:
        """Start a web process (more than one: each on a `port` of its own, behind a proxy)."""
        process = self.start(name, "web", port=port)
        health = f"http://127.0.0.1:{port or self.port}/healthz"
        self.wait_for(lambda: http_status(health) == 200, f"{name} to answer")
        return process

    def worker_start(self, name: str = "worker") -> subprocess.Popen:
        process = self.start(name, "worker")
        self.wait_for(
            lambda: self.manage("worker_alive", "--pid", process.pid, check=False).returncode == 0,
            f"{name} to beat",
        )
        return process

    def close(self) -> None:
        for name in list(self.processes):
            with suppress(Exception):
                self.stop(name, sig=signal.SIGKILL)
        self.redis.kill()
        self.pg.remove()

    def session_make(self, username: str, *, role: str) -> str:
        """A logged-in session of a new user in `role`; return its session key (the cookie)."""
        script = (
            "from django.contrib.auth import get_user_model\n"
            "from django.contrib.auth.models import Group\n"
            "from django.contrib.sessions.backends.db import SessionStore\n"
            f"user = get_user_model().objects.create_user({username!r}, password={PASSWORD!r})\n"
            f"user.groups.add(Group.objects.get(name={role!r}))\n"
            "session = SessionStore()\n"
            "session['_auth_user_id'] = str(user.pk)\n"
            "session['_auth_user_backend'] = 'django.contrib.auth.backends.ModelBackend'\n"
            "session['_auth_user_hash'] = user.get_session_auth_hash()\n"
            "session.create()\n"
            "print(session.session_key)\n"
        )
        return self.manage("shell", "-c", script).strip().splitlines()[-1]

    # --- HTTP ---------------------------------------------------------------------------------
    def request(self, method: str, path: str, *, body=None, headers=None, timeout=30) -> Answer:
        headers = {"Authorization": f"Bearer {self.token}", **(headers or {})}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(  # noqa: S310 (local URL)
            self.base_url + path, data=data, headers=headers, method=method
        )
        started = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                return Answer(response.status, response.read(), time.monotonic() - started)
        except urllib.error.HTTPError as error:
            return Answer(error.code, error.read(), time.monotonic() - started)
        except OSError as error:  # refused (web restarting) or timed out
            return Answer(None, b"", time.monotonic() - started, error=repr(error))

    def get(self, path: str, **options) -> Answer:
        return self.request("GET", path, **options)

    def post_events(self, events: list[dict], **options) -> Answer:
        return self.request("POST", "/api/ingest/events", body={"events": events}, **options)

    # --- the database, read directly ----------------------------------------------------------
    def sql(self, query: str, *params):
        with psycopg.connect(self.database_url, connect_timeout=5) as connection:
            return connection.execute(query, params).fetchall()

    def stock(self) -> dict[tuple[str, str], tuple[int, int]]:
        rows = self.sql(
            "SELECT site.code, sku.code, level.on_hand, level.reserved "
            "FROM inventory_ops_stocklevel level "
            "JOIN inventory_ops_site site ON site.id = level.site_id "
            "JOIN inventory_ops_sku sku ON sku.id = level.sku_id"
        )
        return {(site, sku): (on_hand, reserved) for site, sku, on_hand, reserved in rows}

    @staticmethod
    def wait_for(predicate, what: str, timeout: float = 60, interval: float = 0.2) -> float:
        """Wait until `predicate()` is true; return the seconds it took."""
        started = time.monotonic()
        while not predicate():
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"waited {timeout} s for {what}")
            time.sleep(interval)
        return time.monotonic() - started
