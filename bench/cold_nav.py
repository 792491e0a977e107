"""Navigation to live tiles on a cold browser cache (issue 19): Chromium opens the dashboard in a
new context (empty cache, only the session cookie carried over) and the page itself records, from
the navigation's start, when the server's answer began and ended, the first paint (the tiles
carry their numbers in the HTML), the WebSocket's open, and `data-live-state="live"` (the first
live view over that socket).

    REDIS_URL=redis://127.0.0.1:6379/1 flock /tmp/bench.lock \\
        .venv/bin/python bench/cold_nav.py [--loads 7] [--under-ingest] [--path /]

The stack of the ingest benchmarks (`ingest_stack.py`: a fresh database BENCH_DATABASE_URL,
Daphne with `DEBUG=0`, 2 `IngestWorker` processes), static files collected first as a deployment
does (hashed names, brotli and gzip copies served by WhiteNoise). A few batches of the simulator's
events are applied first so that every tile has something to show. `--under-ingest` takes the
same loads while a separate process POSTs the simulator's 1,000-event batches as fast as they are
accepted (the feed of `reads_under_load.py`): ingest at its sustained maximum.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ["STATIC_ROOT"] = tempfile.mkdtemp(prefix="io-cold-nav-static-")

import ingest_stack  # points DATABASE_URL at the benchmark database

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "inventory_ops.settings")
import django

django.setup()

from tests.processes import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

USERNAME, PASSWORD = "bench-manager", "bench-password-1"

# Before any of the page's scripts: note when the dashboard's socket opens and when the live
# state turns "live", in the page's own clock (milliseconds from the navigation's start).
MARKS_SCRIPT = """
window.__marks = {};
(function () {
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener("open", () => { window.__marks.wsOpen ??= performance.now(); });
      this.addEventListener("message", () => { window.__marks.wsFirst ??= performance.now(); });
    }
  };
  new MutationObserver(() => {
    const root = document.getElementById("live-root");
    if (root && root.dataset.liveState === "live") window.__marks.live ??= performance.now();
  }).observe(document, {subtree: true, attributes: true, attributeFilter: ["data-live-state"]});
})();
"""

READ_MARKS = """() => {
  const nav = performance.getEntriesByType("navigation")[0];
  const paint = performance.getEntriesByName("first-contentful-paint")[0];
  const resources = performance.getEntriesByType("resource");
  const tiles = [...document.querySelectorAll("[data-kpi]")].map((t) => t.textContent.trim());
  return {
    ttfb: nav.responseStart, html: nav.responseEnd, dcl: nav.domContentLoadedEventEnd,
    fcp: paint ? paint.startTime : null, ...window.__marks,
    bytes: [nav, ...resources].reduce((sum, entry) => sum + entry.transferSize, 0),
    htmlBytes: nav.transferSize,
    resources: resources.map((r) => [r.name.split("/").pop().split("?")[0], r.transferSize,
                                     r.startTime, r.responseEnd]),
    tiles: tiles.length, numbers: tiles.filter((text) => /[0-9]/.test(text)).length,
  };
}"""


def manage(*args: str) -> None:
    subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ingest_stack.BASE_DIR,
        env=dict(os.environ),
        check=True,
        stdout=subprocess.DEVNULL,
    )


def viewer_create() -> None:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    user = get_user_model().objects.create_user(USERNAME, password=PASSWORD)
    user.groups.add(Group.objects.get(name="managers"))


def history_apply(base_url: str, token: str, bodies: list[str]) -> None:
    from ingest.models import BatchStatus, IngestBatch

    for body in bodies:
        ingest_stack.post(base_url, token, body)
    while IngestBatch.objects.exclude(status=BatchStatus.DONE).exists():
        time.sleep(0.2)


def loads_take(base_url: str, path: str, loads: int) -> list[dict]:
    from playwright.sync_api import sync_playwright

    from tests.browser.conftest import log_in

    results = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        login = browser.new_context()
        log_in(login.new_page(), base_url, username=USERNAME, password=PASSWORD)
        session = login.storage_state()
        login.close()
        for _ in range(loads):
            context = browser.new_context(
                storage_state=session, viewport={"width": 1366, "height": 768}
            )
            context.add_init_script(MARKS_SCRIPT)
            page = context.new_page()
            page.goto(f"{base_url}{path}")
            page.wait_for_function("() => window.__marks.live", timeout=30_000)
            page.wait_for_function("() => performance.getEntriesByType('paint').length > 1")
            results.append({**page.evaluate(READ_MARKS), "load": os.getloadavg()[0]})
            context.close()
        browser.close()
    return results


def report(label: str, results: list[dict]) -> None:
    def column(key: str) -> str:
        values = [r[key] for r in results if r.get(key) is not None]
        return f"{statistics.median(values):6.0f} ({min(values):.0f}-{max(values):.0f})"

    print(f"{label}: {len(results)} cold loads, ms from the navigation's start, median (range)")
    for key, name in (
        ("ttfb", "server answer begins"),
        ("html", "HTML received"),
        ("fcp", "first paint"),
        ("dcl", "DOMContentLoaded (deferred scripts run)"),
        ("wsOpen", "WebSocket open"),
        ("wsFirst", "first frame"),
        ("live", "live"),
    ):
        print(f"  {name:42} {column(key)}")
    last = results[-1]
    print(
        f"  tiles {last['tiles']}, {last['numbers']} with a number; "
        f"{statistics.median(r['bytes'] for r in results):,.0f} bytes transferred "
        f"(HTML {last['htmlBytes']:,}); load average "
        f"{min(r['load'] for r in results):.1f}-{max(r['load'] for r in results):.1f}"
    )
    for name, size, start, end in last["resources"]:
        print(f"    {name[:40]:40} {size:9,} bytes  {start:6.0f} -> {end:6.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", type=int, default=7)
    parser.add_argument("--path", default="/")
    parser.add_argument("--under-ingest", action="store_true")
    parser.add_argument("--events", type=int, default=400_000, help="the feed under ingest")
    args = parser.parse_args()

    ingest_stack.database_recreate()
    started = time.monotonic()
    manage("collectstatic", "--noinput", "-v", "0")
    print(f"collectstatic: {time.monotonic() - started:.0f} s", flush=True)
    from django.db import connection
    from ingest_common import catalog_ensure, simulator_batches, source_token

    catalog_ensure()
    viewer_create()
    token = source_token()
    history = simulator_batches(total=20_000, batch_size=1000, seed=3)
    feed_bodies = simulator_batches(total=args.events, batch_size=1000) if args.under_ingest else []
    connection.close()
    import django_rq

    django_rq.get_connection("ingest").flushdb()
    with ingest_stack.stack(workers=2) as base_url:
        history_apply(base_url, token, history)
        report("quiet writers", loads_take(base_url, args.path, args.loads))
        if args.under_ingest:
            with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as bodies_file:
                bodies_file.write("\n".join(feed_bodies))
            feeder = subprocess.Popen(
                [
                    *(sys.executable, str(Path(__file__).parent / "reads_under_load.py")),
                    *("--post-from", bodies_file.name, base_url, token, "2"),
                ]
            )
            time.sleep(5)
            report("under ingest", loads_take(base_url, args.path, args.loads))
            feeder.kill()
            feeder.wait()
            os.unlink(bodies_file.name)


if __name__ == "__main__":
    main()
