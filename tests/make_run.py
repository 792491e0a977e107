"""Run `make run` as a newcomer would, from a clean clone, for tests and benchmarks.

The clone reuses the running interpreter's virtualenv through a `.venv` symlink (as this
project's worktrees do): `make run`'s `setup` step then finds every pinned package installed
instead of downloading them; every other step is `make run`'s own. The clone has its own SQLite
database under its `var/` and its own ports: it touches neither the shared PostgreSQL nor a
shared Redis.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from contextlib import contextmanager
from http.cookiejar import CookieJar
from pathlib import Path

from tests.processes import BASE_DIR, free_port, test_log_dir

CREDENTIALS = re.compile(r"username: (\S+)\s+password: (\S+)")
# Marks every process of one `make run` (children inherit the environment), to find them all,
# re-parented orphans included, once it has been stopped.
RUN_MARKER = "INVENTORY_OPS_MAKE_RUN_CHECK"


def clean_clone(destination: Path) -> Path:
    """A `git clone` of this checkout's committed state, with the virtualenv linked in."""
    subprocess.run(["git", "clone", "--quiet", str(BASE_DIR), str(destination)], check=True)
    (destination / ".venv").symlink_to(Path(sys.prefix))
    return destination


def path_without_redis(bin_dir: Path) -> str:
    """A PATH with every program of this one (the virtualenv's aside) except Redis's own."""
    bin_dir.mkdir()
    venv_bin = Path(sys.prefix, "bin").resolve()
    for directory in os.environ["PATH"].split(os.pathsep):
        if not Path(directory).is_dir() or Path(directory).resolve() == venv_bin:
            continue
        for program in Path(directory).iterdir():
            link = bin_dir / program.name
            if not program.name.startswith("redis-") and not link.exists():
                link.symlink_to(program)
    return str(bin_dir)


def nothing_listens(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


class MakeRun:
    """One `make run` in a clone: its own web port and Redis port, its output in a log file."""

    def __init__(self, clone: Path, *, path: str, log_path: Path, redis_port: int | None = None):
        self.clone = clone
        self.port = free_port()
        self.redis_port = redis_port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.marker = uuid.uuid4().hex
        # Only what a newcomer's shell has, plus the two ports: no DATABASE_URL or REDIS_URL.
        self.env = {
            "PATH": path,
            "HOME": os.environ.get("HOME", str(clone)),
            "LANG": "C.UTF-8",
            "PORT": str(self.port),
            "REDIS_PORT": str(self.redis_port),
            "PYTHONUNBUFFERED": "1",
            RUN_MARKER: self.marker,
        }
        self.process: subprocess.Popen | None = None
        self.started = 0.0

    @property
    def redis_url(self) -> str:
        """Where `make run` looks for Redis, given no REDIS_URL."""
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.started = time.monotonic()
        with open(self.log_path, "wb") as log:
            # Its own process group, as a terminal gives a command: Ctrl-C goes to all of it.
            self.process = subprocess.Popen(
                ["make", "run"],
                cwd=self.clone,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def ctrl_c(self, timeout: float = 90) -> int:
        """Send SIGINT to make's process group, as a terminal's Ctrl-C does; wait for make."""
        os.killpg(self.process.pid, signal.SIGINT)
        return self.process.wait(timeout=timeout)

    def processes(self, *, besides: frozenset[int] = frozenset()) -> list[tuple[int, str]]:
        """(pid, command line) of the live processes of this run: those whose environment
        carries its marker, and the Redis server on its port (which writes its title over its
        environment: "... 127.0.0.1:<port>"), except the pids `besides`."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                environ = (entry / "environ").read_bytes()
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
                status = (entry / "status").read_text()
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
            ours = f"{RUN_MARKER}={self.marker}".encode() in environ.split(b"\0")
            zombie = re.search(r"^State:\s+Z", status, re.MULTILINE)
            on_port = command.endswith(f":{self.redis_port}") and int(entry.name) not in besides
            if (ours or on_port) and not zombie:
                found.append((int(entry.name), command))
        return found

    def processes_gone_wait(
        self, timeout: float = 10, *, besides: frozenset[int] = frozenset()
    ) -> list[tuple[int, str]]:
        """Wait for the stopped processes to leave the process table; return those left."""
        deadline = time.monotonic() + timeout
        left = self.processes(besides=besides)
        while left and time.monotonic() < deadline:
            time.sleep(0.2)
            left = self.processes(besides=besides)
        return left

    def kill_all(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        for pid, _ in self.processes():
            os.kill(pid, signal.SIGKILL)

    def manage_py(self, *args: str) -> str:
        """Run a management command in the clone as `make run` runs its own: against the run's
        database and Redis, with DEBUG on."""
        result = subprocess.run(
            [str(self.clone / ".venv" / "bin" / "python"), "manage.py", *args],
            cwd=self.clone,
            env={**self.env, "REDIS_URL": self.redis_url, "DEBUG": "1"},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, f"manage.py {' '.join(args)}: {result.stderr}"
        return result.stdout


@contextmanager
def make_run(clone: Path, *, path: str, log_name: str, redis_port: int | None = None):
    """A `make run` in `clone`, to `start()`; on the way out, kill whatever of it still runs."""
    run = MakeRun(
        clone,
        path=path,
        log_path=test_log_dir() / f"{log_name}.log",
        redis_port=redis_port,
    )
    try:
        yield run
    finally:
        run.kill_all()


def demo_login(run: MakeRun) -> str:
    """Log in through the login form with the first demo user `make run` printed, as a person
    would; return the session cookie."""
    username, password = CREDENTIALS.search(run.output()).groups()
    cookies = CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(cookies))
    with opener.open(f"{run.base_url}/accounts/login/", timeout=30) as response:
        form = response.read().decode()
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form).group(1)
    body = urllib.parse.urlencode(
        {"username": username, "password": password, "csrfmiddlewaretoken": csrf}
    ).encode()
    opener.open(f"{run.base_url}/accounts/login/", data=body, timeout=30).close()
    session = next(cookie.value for cookie in cookies if cookie.name == "sessionid")
    return f"sessionid={session}"
