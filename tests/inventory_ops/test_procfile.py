"""The Procfile names the processes an operator runs; each line works on its own, README lists
them word for word, and `make run` starts the long-running ones with honcho (after migrating
itself): every process must come up, the web must serve pages, and the simulator's events must
reach the ledger through the worker."""

import re
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from django.core.management import call_command

from ledger.models import Movement, MovementCause
from tests.processes import BASE_DIR, free_port, running, subprocess_env, wait_for_http

PROCFILE = BASE_DIR / "Procfile"
README = BASE_DIR / "README.md"


def procfile_lines() -> dict[str, str]:
    lines = [line for line in PROCFILE.read_text().splitlines() if line.strip()]
    return dict(line.split(": ", 1) for line in lines)


def readme_process_lines() -> dict[str, str]:
    """The commands of README's "Running each process alone", by their `# name` comment."""
    section = README.read_text().split("## Running each process alone", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    commands = {}
    for line in block.splitlines():
        command, _, name = line.rpartition("  # ")
        if command:
            commands[name.strip()] = command.strip()
    return commands


def test_procfile_names_release_web_worker_and_simulator():
    assert list(procfile_lines()) == ["release", "web", "worker", "simulator"]


def test_readme_lists_every_procfile_line_word_for_word():
    assert readme_process_lines() == procfile_lines()


def test_web_binds_to_host_and_port_from_the_environment_with_local_defaults():
    web = procfile_lines()["web"]

    assert "--bind ${HOST:-127.0.0.1}" in web
    assert "--port ${PORT:-8000}" in web


def test_the_worker_runs_the_ingest_sweeper_and_the_scheduler():
    worker = procfile_lines()["worker"]

    assert "--worker-class ingest.worker.IngestWorker" in worker
    assert "--with-scheduler" in worker
    assert "rqworker ingest default" in worker


def test_make_run_migrates_then_starts_every_long_running_process_but_not_release():
    dry_run = make_run_commands(port=8123)

    migrate_at = next(i for i, line in enumerate(dry_run) if "manage.py migrate" in line)
    honcho_at = next(i for i, line in enumerate(dry_run) if "honcho" in line)
    assert migrate_at < honcho_at
    started = dry_run[honcho_at].split("--port 8123", 1)[1].split()
    assert started == [name for name in procfile_lines() if name != "release"]


@pytest.mark.slow
def test_release_line_alone_migrates_a_fresh_database_and_loads_the_runbooks(tmp_path):
    database = tmp_path / "fresh.sqlite3"
    unreachable_redis = f"redis://127.0.0.1:{free_port()}/0"  # scheduling is best effort

    result = subprocess.run(
        ["sh", "-c", procfile_lines()["release"]],
        cwd=BASE_DIR,
        env=subprocess_env(
            PATH=f"{Path(sys.executable).parent}:{subprocess_env()['PATH']}",
            DATABASE_URL=f"sqlite:///{database}",
            REDIS_URL=unreachable_redis,
        ),
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    with sqlite3.connect(database) as db:
        runbooks = db.execute("select count(*) from oncall_runbook").fetchone()[0]
        ingest_tables = db.execute(
            "select count(*) from sqlite_master where type = 'table' and name like 'ingest_%'"
        ).fetchone()[0]
    assert ingest_tables > 0
    assert runbooks == len(list((BASE_DIR / "docs" / "runbooks").glob("*.md")))


@pytest.mark.slow
def test_web_line_alone_listens_where_host_and_port_say():
    port = free_port()
    env = subprocess_env(
        PATH=f"{Path(sys.executable).parent}:{subprocess_env()['PATH']}",
        HOST="127.0.0.2",
        PORT=str(port),
    )

    with running(["sh", "-c", f"exec {procfile_lines()['web']}"], env=env, log_name="web-line"):
        status = wait_for_http(f"http://127.0.0.2:{port}/healthz", timeout=60, expect_status=None)
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5)

    assert status is not None


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_make_run_starts_every_process_serves_pages_and_applies_simulated_events_within_60s():
    call_command("load_demo", force=True)
    port = free_port()
    honcho_command = next(line for line in make_run_commands(port=port) if "honcho" in line)
    env = subprocess_env(PATH=f"{Path(sys.executable).parent}:{subprocess_env()['PATH']}")
    started = time.monotonic()

    with running(["sh", "-c", honcho_command], env=env, log_name="honcho") as honcho_process:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=60)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/accounts/login/") as response:
            page = response.read().decode()
        stylesheet_url = re.search(r'href="([^"]+\.css)"', page).group(1)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{stylesheet_url}") as response:
            stylesheet = response.read().decode()
        serving_after = time.monotonic() - started
        while time.monotonic() - started < 60 and not simulated_movements():
            time.sleep(0.5)
        live_after = time.monotonic() - started
        still_running = honcho_process.poll() is None

    assert serving_after < 60
    assert live_after < 60, "no simulated event was applied within 60 s"
    assert 'name="username"' in page
    assert "--bg" in stylesheet  # static files are served by the web process itself
    assert still_running, (
        "honcho stopped: one of the Procfile processes exited (see var/test-logs/honcho.log)"
    )


def make_run_commands(*, port: int) -> list[str]:
    """The commands `make run` would run (a dry run: nothing is executed)."""
    result = subprocess.run(
        ["make", "--dry-run", "--always-make", "run", f"PORT={port}"],
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return result.stdout.splitlines()


def simulated_movements() -> int:
    return Movement.objects.filter(
        cause=MovementCause.FEED_EVENT, cause_ref__startswith="sim"
    ).count()
