"""Headless Chromium (the system one, never downloaded) for tests that look at the dashboard."""

import threading
from contextlib import contextmanager

import pytest
from django.db import connection

from tests.processes import CHROMIUM, CHROMIUM_ARGS


@pytest.fixture
def chromium(transactional_db):
    # Per test, and after the database fixture: Playwright's sync API runs an event loop in
    # this thread, and Django refuses database setup or flush while one is running.
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium):
    context = chromium.new_context(viewport={"width": 1366, "height": 768})
    page = context.new_page()
    yield page
    context.close()


def in_thread(function, /, *args, **kwargs):
    """Run database code off the Playwright thread.

    Playwright's sync API keeps an event loop in this thread, and Django refuses ORM calls
    from a thread with a running loop (SynchronousOnlyOperation).
    """
    outcome = {}

    def run():
        try:
            outcome["value"] = function(*args, **kwargs)
        except BaseException as error:  # re-raised in the test's thread
            outcome["error"] = error
        finally:
            connection.close()

    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def log_in(page, base_url: str, *, username: str, password: str) -> None:
    page.goto(f"{base_url}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base_url}/")


@contextmanager
def no_reload(page):
    """Fail if the page reloads inside the block (a live update must not reload)."""
    page.evaluate("window.__sameDocument = true")
    yield
    assert page.evaluate("window.__sameDocument === true"), "the page reloaded"


def live_state_wait(page, state: str, timeout_ms: float = 10_000) -> None:
    page.wait_for_function(
        "state => document.querySelector('[data-live-state]').dataset.liveState === state",
        arg=state,
        timeout=timeout_ms,
    )
