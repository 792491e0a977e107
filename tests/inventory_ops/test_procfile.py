"""`make run` loads the demo and starts the Procfile with honcho: every process must come up,
the web must serve pages, and the simulator's events must reach the ledger through the worker."""

import sys
import time
import urllib.request
from pathlib import Path

import pytest
from django.core.management import call_command

from inventory_ops.models import Movement, MovementCause
from tests.processes import free_port, running, subprocess_env, wait_for_http

PROCFILE = Path(__file__).resolve().parents[2] / "Procfile"


def test_procfile_names_web_worker_and_simulator():
    names = [line.split(":", 1)[0] for line in PROCFILE.read_text().splitlines() if line.strip()]

    assert names == ["web", "worker", "simulator"]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_every_procfile_process_starts_serves_pages_and_applies_simulated_events_within_60s():
    call_command("load_demo", force=True)
    port = free_port()
    honcho = str(Path(sys.executable).with_name("honcho"))
    env = subprocess_env(
        PATH=f"{Path(sys.executable).parent}:{subprocess_env()['PATH']}",
        SIMULATOR_URL=f"http://127.0.0.1:{port}",
    )
    started = time.monotonic()

    with running(
        [honcho, "--procfile", str(PROCFILE), "start", "--port", str(port)],
        env=env,
        log_name="honcho",
    ) as honcho_process:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=60)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/accounts/login/") as response:
            page = response.read().decode()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/static/css/app.css") as response:
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


def simulated_movements() -> int:
    return Movement.objects.filter(
        cause=MovementCause.FEED_EVENT, cause_ref__startswith="sim"
    ).count()
