"""`make run` starts the Procfile with honcho: every process must come up and serve pages."""

import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.processes import free_port, running, subprocess_env, wait_for_http

PROCFILE = Path(__file__).resolve().parents[2] / "Procfile"


def test_procfile_names_web_worker_and_simulator():
    names = [line.split(":", 1)[0] for line in PROCFILE.read_text().splitlines() if line.strip()]

    assert names == ["web", "worker", "simulator"]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_every_procfile_process_starts_and_the_web_serves_login_and_healthz_within_60s():
    port = free_port()
    honcho = str(Path(sys.executable).with_name("honcho"))
    env = subprocess_env(PATH=f"{Path(sys.executable).parent}:{subprocess_env()['PATH']}")
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
        elapsed = time.monotonic() - started
        time.sleep(2)  # let the worker and simulator fail, if they are going to
        still_running = honcho_process.poll() is None

    assert elapsed < 60
    assert 'name="username"' in page
    assert "--bg" in stylesheet  # static files are served by the web process itself
    assert still_running, (
        "honcho stopped: one of the Procfile processes exited (see var/test-logs/honcho.log)"
    )
