"""Run the real stack for an ingest benchmark: a fresh PostgreSQL database, Daphne, N workers.

Import this module before anything Django: it points DATABASE_URL at the benchmark database
(BENCH_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/io_ingest_bench) first.
"""

import json
import os
import subprocess
import sys
import time
import urllib.request
from contextlib import ExitStack, contextmanager
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
DEFAULT_BENCH_DB = "postgres://postgres@127.0.0.1:5432/io_ingest_bench"
BENCH_DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", DEFAULT_BENCH_DB)
os.environ["DATABASE_URL"] = BENCH_DATABASE_URL
sys.path.insert(0, str(BASE_DIR))

from bench.server_env import production_environ_set, settings_line  # noqa: E402

production_environ_set()


def database_recreate() -> None:
    """Drop and create the benchmark database, then migrate it (outside Django)."""
    import psycopg

    if "django.db" in sys.modules:
        from django.db import connections

        connections.close_all()  # or the DROP ... FORCE below kills them under our feet

    admin_url, name = BENCH_DATABASE_URL.rsplit("/", 1)
    with psycopg.connect(f"{admin_url}/postgres", autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=BASE_DIR,
        check=True,
        env=dict(os.environ),
    )


def _admin_url_and_name() -> tuple[str, str]:
    admin_url, name = BENCH_DATABASE_URL.rsplit("/", 1)
    return f"{admin_url}/postgres", name


def _close_django_connections() -> None:
    if "django.db" in sys.modules:
        from django.db import connections

        connections.close_all()


def template_save() -> None:
    """Keep the benchmark database as it is now (migrated, catalog loaded) as a template, so
    that the next runs start from a copy of it (`database_from_template`) instead of migrating."""
    import psycopg

    _close_django_connections()
    admin_url, name = _admin_url_and_name()
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}_tpl" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}_tpl" TEMPLATE "{name}"')


def template_drop() -> None:
    import psycopg

    admin_url, name = _admin_url_and_name()
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}_tpl" WITH (FORCE)')


def database_from_template() -> bool:
    """Make the benchmark database a fresh copy of its template; False if there is none."""
    import psycopg

    _close_django_connections()
    admin_url, name = _admin_url_and_name()
    with psycopg.connect(admin_url, autocommit=True) as connection:
        if not connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [f"{name}_tpl"]
        ).fetchone():
            return False
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}" TEMPLATE "{name}_tpl"')
    return True


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(args: list[str], log_name: str, extra_env: dict | None = None) -> subprocess.Popen:
    log_dir = BASE_DIR / "var" / "bench-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1", LOG_LEVEL="WARNING", **(extra_env or {}))
    log = open(log_dir / f"{log_name}.log", "wb")  # noqa: SIM115 (closed with the process)
    process = subprocess.Popen(
        args, cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    process.log = log
    return process


@contextmanager
def _process(args: list[str], log_name: str, extra_env: dict | None = None):
    process = _start(args, log_name, extra_env)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.log.close()


@contextmanager
def stack(*, workers: int, slo_counters: bool = True):
    """Yield the web's base URL with Daphne and `workers` ingest workers running; with
    `slo_counters=False`, with the SLO counters switched off (bench/slo_off.py)."""
    port = free_port()
    extra_env = {} if slo_counters else {"DJANGO_SETTINGS_MODULE": "bench.slo_off_settings"}
    worker_class = "ingest.worker.IngestWorker" if slo_counters else "bench.slo_off.SloOffWorker"
    with ExitStack() as stack_:
        stack_.enter_context(
            _process(
                [
                    *(sys.executable, "-m", "daphne", "--bind", "127.0.0.1"),
                    *("--port", str(port), "inventory_ops.asgi:application"),
                ],
                "daphne",
                extra_env,
            )
        )
        for number in range(workers):
            stack_.enter_context(
                _process(
                    [
                        *(sys.executable, "manage.py", "rqworker", "ingest"),
                        *("--worker-class", worker_class),
                    ],
                    f"worker-{number}",
                    extra_env,
                )
            )
        base_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base_url}/healthz", timeout=2):  # noqa: S310
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        time.sleep(2)  # let the workers connect
        counters = "" if slo_counters else ", SLO counters off"
        print(f"{settings_line()}; {workers} worker(s){counters}", flush=True)
        yield base_url


def concurrently(target, threads: int) -> None:
    """Run `target` in `threads` threads at once and wait for them all."""
    import threading

    running = [threading.Thread(target=target) for _ in range(threads)]
    for thread in running:
        thread.start()
    for thread in running:
        thread.join()


def post(base_url: str, token: str, body: str) -> dict:
    request = urllib.request.Request(  # noqa: S310 (local URL)
        f"{base_url}/api/ingest/events",
        data=body.encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
        return json.loads(response.read())
