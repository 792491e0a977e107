"""The "Restock now" panel in Chromium: a dispatch that leaves a SKU short of its lead time
shows up in the panel without a reload."""

import datetime as dt

import pytest
from django.utils import timezone

from dashboards.broadcasts import scopes_changed_announce
from ledger.models import MovementKind
from ledger.services import MovementRequest, movements_record
from tests.browser.conftest import in_thread, live_state_wait, log_in, no_reload
from tests.builders import site_make, sku_make, user_make
from tests.processes import daphne_server

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "pw-for-tests"


def _movement(kind: str, qty: int, at: dt.datetime) -> MovementRequest:
    return MovementRequest(site="ams", sku="TEA", kind=kind, on_hand_delta=qty, occurred_at=at)


def _comfortable_tea() -> None:
    """ams holds 10 TEA after selling 20 in 28 days: 14 days of cover, nothing to reorder."""
    site_make("ams"), sku_make("TEA")
    now = timezone.now()
    movements_record(
        requests=[
            _movement(MovementKind.RECEIVED, 30, now - dt.timedelta(days=10)),
            _movement(MovementKind.ORDER_DISPATCHED, -20, now - dt.timedelta(days=5)),
        ]
    )


def _dispatch_and_announce(qty: int) -> None:
    movements_record(requests=[_movement(MovementKind.ORDER_DISPATCHED, -qty, timezone.now())])
    scopes_changed_announce(site_codes=["ams"])


@pytest.mark.parametrize("path", ["/sites/ams/", "/"])
def test_a_dispatch_that_makes_a_sku_urgent_shows_in_the_panel_live(page, path):
    in_thread(user_make, "boss")
    in_thread(_comfortable_tea)
    with daphne_server() as daphne:
        log_in(page, daphne.base_url, username="boss", password=PASSWORD)
        page.goto(f"{daphne.base_url}{path}")
        live_state_wait(page, "live")
        assert page.locator("[data-restock-none]").is_visible()

        with no_reload(page):
            # 9 more leave: 29 sold in 28 days, 1 left: 0.97 days of cover, under 3
            in_thread(_dispatch_and_announce, 9)
            quantity = page.locator('[data-restock-qty="ams/TEA"]')
            quantity.wait_for(timeout=5000)

        # ceil(29 / 28 * 14) = 15 to cover 14 days, less the 1 available
        assert quantity.text_content() == "14"
        assert page.text_content('[data-restock-cover="ams/TEA"]') == "1.0"
