"""Take the README screenshots of the live dashboard: docs/dashboard.png (laptop),
docs/dashboard-kiosk.png (1080p TV, kiosk mode) and docs/dashboard-phone.png (a phone).

Uses the database in DATABASE_URL (loads the demo data into it if missing), starts Daphne on a
free port, an RQ worker and the simulator, as `make run` does, lets the simulator feed the
dashboard for `--feed` seconds (the 1h charts fill from the demo history and the live traffic),
then logs in as the demo manager with the system Chromium and waits for the page to be live
before each shot:

    DATABASE_URL=... REDIS_URL=... .venv/bin/python scripts/screenshots.py [--feed 90]

A fresh database gives the demo's 35 days of history ending now: the charts of a database
whose demo was loaded hours ago have an empty hour, which is what the dashboard would show.
"""

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "inventory_ops.settings")
os.environ.setdefault("DEBUG", "1")  # a local demo, as `make run`

import django  # noqa: E402

django.setup()

from playwright.sync_api import sync_playwright  # noqa: E402

from tests.processes import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    daphne_server,
    manage_py,
    rq_worker,
    running,
)

DOCS = BASE_DIR / "docs"
SHOTS = [
    # (file, path, viewport, whole page): a laptop scrolls, a TV shows one screen
    ("dashboard.png", "/", {"width": 1366, "height": 768}, True),
    ("dashboard-kiosk.png", "/sites/ams-dc/?kiosk=1", {"width": 1920, "height": 1080}, False),
    ("dashboard-phone.png", "/", {"width": 390, "height": 844}, False),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feed", type=float, default=90, help="seconds of simulator traffic first")
    args = parser.parse_args()
    subprocess.run(manage_py("load_demo"), check=True, cwd=BASE_DIR, stdout=subprocess.DEVNULL)
    DOCS.mkdir(exist_ok=True)
    with (
        daphne_server() as daphne,
        rq_worker("ingest", "default"),
        running(manage_py("simulate_feeds", "--url", daphne.base_url), log_name="simulator"),
        sync_playwright() as playwright,
    ):
        print(f"the simulator feeds the dashboard for {args.feed:.0f} s")
        time.sleep(args.feed)
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(bypass_csp=True)  # for wait_for_function; the app keeps its CSP
        page.goto(f"{daphne.base_url}/accounts/login/")
        page.fill("#id_username", "manager")
        page.fill("#id_password", "manager-demo")
        page.click("button[type=submit]")
        page.wait_for_url(f"{daphne.base_url}/")
        for file_name, path, viewport, full_page in SHOTS:
            page.set_viewport_size(viewport)
            page.goto(f"{daphne.base_url}{path}")
            page.wait_for_function(
                "() => document.querySelector('[data-live-state]').dataset.liveState === 'live'"
            )
            page.wait_for_selector("#chart-orders-per-minute .main-svg")
            page.wait_for_timeout(500)  # Plotly's resize to the new viewport
            # fonts and Plotly can take long on a busy machine (30 s timed out at load 15)
            page.screenshot(path=DOCS / file_name, full_page=full_page, timeout=180_000)
            print(f"saved docs/{file_name}")
        browser.close()


if __name__ == "__main__":
    main()
