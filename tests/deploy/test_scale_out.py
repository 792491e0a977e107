"""Scale-out, proven on this machine: Debian's nginx with the shipped configuration
(deploy/nginx/default.conf) in front of two web processes, with two workers, on one PostgreSQL
and one Redis (the stack of tests/faults, each process from its Procfile line).

A warehouse manager logs in and opens the dashboard in Chromium through the proxy while a
producer POSTs batches through the proxy. The batches land on both web processes; the page's
tiles follow them. The web process holding the page's WebSocket is killed: the page reconnects
through the proxy to the other one and is live again within 5 s, and no event is lost: every
batch answered 202 is applied, the stock equals the sum of what was sent, and the page shows it.
"""

import signal
import time

import pytest

from tests.browser.conftest import live_state_wait, log_in
from tests.faults.producer import Producer, batches_left
from tests.faults.stack import PASSWORD, Stack
from tests.processes import CHROMIUM, CHROMIUM_ARGS, NginxProxy, free_port

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.postgres,
    pytest.mark.timeout(600),
]

WEB_PROCESSES = ("web-1", "web-2")


def site_on_hand_shown(page) -> dict[str, int]:
    return page.evaluate(
        """() => Object.fromEntries(
            [...document.querySelectorAll('[data-site-on-hand]')]
                .map(cell => [cell.dataset.siteOnHand, Number(cell.textContent)]))"""
    )


def caught_up_wait(stack: Stack, producer: Producer, page, what: str) -> None:
    """Every batch the producer had answered 202 is applied and the page shows the result."""
    producer.pause()
    stack.wait_for(lambda: batches_left(stack, producer.batches) == 0, f"{what}: batches done")
    page.wait_for_function(
        """wanted => Object.entries(wanted).every(([site, value]) => Number(
            document.querySelector(`[data-site-on-hand="${site}"]`).textContent) === value)""",
        arg=producer.site_on_hand(),
        timeout=30_000,
    )


def test_two_web_processes_behind_nginx_share_the_feed_and_the_page_outlives_losing_one():
    sync_api = pytest.importorskip("playwright.sync_api")
    stack = Stack(name="scale-out", DASHBOARD_REFRESH_S="2")
    proxy = None
    try:
        web_ports = {name: free_port() for name in WEB_PROCESSES}
        for name, port in web_ports.items():
            stack.web_start(name, port=port)
        stack.worker_start("worker-1")
        stack.worker_start("worker-2")
        proxy = NginxProxy(list(web_ports.values()))
        proxy.start()
        # From here on every request of the test goes through the proxy.
        stack.base_url = proxy.base_url
        stack.session_make("floor", role="managers")
        producer = Producer(stack)

        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            context = browser.new_context()
            page = context.new_page()
            # Which web process answered each WebSocket handshake (the proxy names it).
            socket_upstreams: list[str] = []
            devtools = context.new_cdp_session(page)
            devtools.send("Network.enable")
            devtools.on(
                "Network.webSocketHandshakeResponseReceived",
                lambda event: socket_upstreams.append(
                    {k.lower(): v for k, v in event["response"]["headers"].items()}.get(
                        "x-upstream", ""
                    )
                ),
            )
            log_in(page, proxy.base_url, username="floor", password=PASSWORD)
            live_state_wait(page, "live", 30_000)
            assert site_on_hand_shown(page) == {"north": 0, "south": 0}

            # when batches are POSTed through the proxy, the tiles follow
            producer.start()
            time.sleep(4)
            caught_up_wait(stack, producer, page, "before the kill")
            served = {
                upstream
                for method, path, status, upstream in proxy.requests()
                if (method, path, status) == ("POST", "/api/ingest/events", 202)
            }
            assert served == {f"127.0.0.1:{port}" for port in web_ports.values()}, served

            # when the web process holding the page's WebSocket is killed
            (holding,) = [
                name
                for name, port in web_ports.items()
                if socket_upstreams[-1].endswith(f":{port}")
            ]
            producer.resume()
            time.sleep(1)
            stack.stop(holding, sig=signal.SIGKILL)
            killed_at = time.monotonic()
            # then the page notices, reconnects through the proxy to the other one and is live
            # again within 5 s
            live_state_wait(page, "reconnecting", 5_000)
            live_state_wait(page, "live", 10_000)
            back_in = time.monotonic() - killed_at
            assert back_in < 5, f"live again after {back_in:.1f} s"
            (survivor,) = set(WEB_PROCESSES) - {holding}
            assert socket_upstreams[-1] == f"127.0.0.1:{web_ports[survivor]}"

            # and no event is lost: every batch answered 202 applied, the page showing it
            time.sleep(3)
            caught_up_wait(stack, producer, page, "after the kill")
            producer.stop()
            stock = {key: on_hand for key, (on_hand, _) in stack.stock().items()}
            assert stock == dict(producer.expected)
            assert "ledger OK" in stack.manage("check_ledger")
            assert 500 not in producer.statuses, producer.statuses
            browser.close()
        print(
            f"\nbatches accepted: {len(producer.batches)}, events {producer.events_accepted}"
            f"\nanswers: {dict(producer.statuses)}"
            f"\nlive again {back_in:.2f} s after {holding} was killed"
        )
    finally:
        if proxy is not None:
            proxy.stop()
        stack.close()
