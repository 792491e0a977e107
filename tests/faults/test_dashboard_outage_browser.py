"""What the warehouse manager's screen says while Redis is away, and that it comes back alone:
headless Chromium on the dashboard of the real stack."""

import time

import pytest

from tests.faults.stack import Stack
from tests.processes import CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.postgres]


def live_state_wait(page, state: str, timeout_ms: float) -> None:
    page.wait_for_function(
        "state => document.querySelector('[data-live-state]').dataset.liveState === state",
        arg=state,
        timeout=timeout_ms,
    )


def test_the_dashboard_says_server_unavailable_while_redis_is_away_and_is_live_after():
    sync_api = pytest.importorskip("playwright.sync_api")
    stack = Stack(name="browser-outage")
    try:
        stack.web_start()
        session = stack.session_make("floor", role="managers")
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            context = browser.new_context()
            context.add_cookies([{"name": "sessionid", "value": session, "url": stack.base_url}])
            page = context.new_page()
            page.goto(f"{stack.base_url}/")
            live_state_wait(page, "live", 30_000)
            # when Redis dies
            stack.redis.kill()
            try:
                # then the page says the server is unavailable and that it retries
                live_state_wait(page, "reconnecting", 15_000)
                page.wait_for_function(
                    "() => document.getElementById('live-badge').textContent"
                    ".startsWith('Server unavailable, retrying')",
                    timeout=5_000,
                )
            finally:
                stack.redis.start()
            back_at = time.monotonic()
            # and it is live again within 5 s of Redis's return, without a reload
            live_state_wait(page, "live", 30_000)
            assert time.monotonic() - back_at < 5
            assert page.text_content("#live-badge") == "Live"
            browser.close()
    finally:
        stack.close()
