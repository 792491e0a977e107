"""The screens as their users meet them: the kiosk on a floor TV (one screen, values that fit,
offline and signed-out states seen from across the room, tiles that judge) and a phone (nothing
off screen). Headless Chromium against a real Daphne and database."""

import datetime as dt
import os
import signal
import time

import pytest
from django.utils import timezone

from dashboards.panels import CHARTS, RESTOCK_ROWS
from ingest.sources import feed_source_create
from ledger.models import MovementKind
from oncall.services import alerts_evaluate
from tests.browser.conftest import in_thread, live_state_wait, log_in
from tests.builders import site_make, sku_make, user_make
from tests.dashboards.kpi_helpers import count, deliver, move, receive, record
from tests.oncall.test_alerts import dispatch, negative_stock_rule
from tests.processes import daphne_server

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "pw-for-tests"
HOSTILE_NAME = '<b>Amsterdam "Noord" & Zuid</b> distribution centre with a very long name indeed'
TV_SCREENS = [(1920, 1080), (3840, 2160)]
PHONE = {"width": 390, "height": 844}

FITS_ONE_SCREEN = """() => ({
  scrollWidth: document.documentElement.scrollWidth,
  scrollHeight: document.documentElement.scrollHeight,
  width: innerWidth,
  height: innerHeight,
})"""
CHARTS_IN_VIEW = """() => [...document.querySelectorAll('[data-chart]')].map(chart => {
  const box = chart.getBoundingClientRect();
  return {id: chart.id, drawn: !!chart.querySelector('.main-svg'), top: box.top,
          bottom: box.bottom, right: box.right, height: box.height};
})"""
RESTOCK_SHOWN = """() => {
  const box = document.getElementById('restock').getBoundingClientRect();
  const shown = element => element.offsetParent !== null;
  return {bottom: box.bottom, right: box.right,
          rows: [...document.querySelectorAll('#restock tbody tr')].filter(shown).length,
          columns: [...document.querySelectorAll('#restock th')].filter(shown)
            .map(th => th.textContent)};
}"""
# The right column of the TV: the freshness panel whole inside it, nothing clipped, and no
# table cell broken mid-word ("simulato r"): a cell of one word renders on one line.
RIGHT_COLUMN_SHOWN = """() => {
  const feeds = document.getElementById('feeds');
  const column = feeds.parentElement;
  const lines = cell => {  // the lines its text takes (a badge's border box is no line)
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    const tops = new Set();
    for (let text = walker.nextNode(); text; text = walker.nextNode()) {
      const range = document.createRange();
      range.selectNodeContents(text);
      [...range.getClientRects()].filter(rect => rect.width > 0)
        .forEach(rect => tops.add(Math.round(rect.top)));
    }
    return tops.size;
  };
  const shown = element => element.offsetParent !== null;
  const cells = [...document.querySelectorAll('#dashboard td, #dashboard th')].filter(shown);
  return {
    bottom: feeds.getBoundingClientRect().bottom,
    columnBottom: column.getBoundingClientRect().bottom,
    clipped: [feeds, column].filter(box => box.scrollHeight > box.clientHeight).map(box => box.id
      || box.className),
    broken: cells.filter(cell => !/\\s/.test(cell.textContent.trim()) && lines(cell) > 1)
      .map(cell => cell.textContent.trim()),
    names: [...document.querySelectorAll('#feeds tbody tr td:first-child')].map(cell => ({
      text: cell.textContent, title: cell.title, fits: cell.scrollWidth <= cell.clientWidth,
      nowrap: getComputedStyle(cell).whiteSpace === 'nowrap',
      ellipsis: getComputedStyle(cell).textOverflow === 'ellipsis'})),
  };
}"""
FEED_NAMES = ["simulator", "simulator-courier", "simulator-wms", "warehouse-" + "long-name-" * 4]
CUT_TILE_VALUES = """() => [...document.querySelectorAll('[data-kpi]')]
  .filter(value => value.scrollWidth > value.clientWidth)
  .map(value => value.dataset.kpi + ': ' + value.textContent)"""


@pytest.fixture
def manager():
    return in_thread(user_make, "boss", role="managers")


@pytest.fixture
def huge_site():
    """Site ams, HTML in its name, with numbers far larger than any tile was drawn for, and as
    many SKUs to restock as the panel lists."""

    def build():
        site = site_make("ams", name=HOSTILE_NAME)
        sku = sku_make("TEA", unit_cost="1999.99")
        now = timezone.now()
        receive(site, sku, 987_654_321, now - dt.timedelta(minutes=20))
        record(count(site, sku, now - dt.timedelta(minutes=10), counted=0))
        deliver(site, now - dt.timedelta(minutes=5), cost="123456.78")
        # and ten SKUs under their reorder point: "Restock now" as full as it gets
        for number in range(RESTOCK_ROWS):
            low = sku_make(f"LOW-{number}", reorder_point=1000 + number)
            receive(site, low, 10 + number, now - dt.timedelta(minutes=20))
        # the demo's feeds, and one with a name longer than its cell
        for name in FEED_NAMES:
            feed_source_create(name=name)
        # and an open alert above them in the same column
        oversold = sku_make("OVERSOLD")
        record(dispatch(site, oversold, 5))
        negative_stock_rule(site)
        alerts_evaluate(site_codes=None)
        return site

    return in_thread(build)


def kiosk_open(page, base_url: str, width: int, height: int, path: str = "/?kiosk=1") -> None:
    page.set_viewport_size({"width": width, "height": height})
    log_in(page, base_url, username="boss", password=PASSWORD)
    page.goto(f"{base_url}{path}")
    live_state_wait(page, "live")
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-chart]')]"
        ".every(chart => chart.querySelector('.main-svg'))"
    )


@pytest.mark.parametrize("path", ["/?kiosk=1", "/sites/ams/?kiosk=1"])
@pytest.mark.parametrize(("width", "height"), TV_SCREENS)
def test_the_kiosk_fits_one_screen_with_every_chart_and_no_value_cut(
    page, manager, huge_site, width, height, path
):
    with daphne_server() as daphne:
        kiosk_open(page, daphne.base_url, width, height, path)
        page.wait_for_timeout(300)  # Plotly's responsive resize
        screen = page.evaluate(FITS_ONE_SCREEN)
        right_column = page.evaluate(RIGHT_COLUMN_SHOWN)
        charts = page.evaluate(CHARTS_IN_VIEW)
        cut = page.evaluate(CUT_TILE_VALUES)
        restock = page.evaluate(RESTOCK_SHOWN)
        units = page.locator('[data-kpi="mismatch_units"]')
        units_shown, units_exact = units.text_content(), units.get_attribute("title")
        # read in one go in the page: a live update may swap the tiles between a handle's
        # lookup and its use, and a detached element has no computed style (NaN)
        value_size = page.evaluate(
            "() => parseFloat(getComputedStyle("
            "document.querySelector('[data-kpi=\"deliveries\"]')).fontSize)"
        )

    assert screen["scrollHeight"] <= screen["height"]  # no scrolling on a TV
    assert screen["scrollWidth"] <= screen["width"]
    assert len(charts) == len(CHARTS)  # the channel chart too, in the same two rows
    for chart in charts:
        assert chart["drawn"], chart
        assert chart["bottom"] <= height and chart["right"] <= width, chart
        assert chart["height"] >= height * 0.2, chart  # a chart, not a sliver
    # beside them, the most urgent restocking in a short list
    assert restock["bottom"] <= height and restock["right"] <= width, restock
    columns = ["SKU", "Days of cover"] if "sites/" in path else ["Site", "SKU", "Days of cover"]
    assert restock["rows"] == 5 and restock["columns"] == columns
    # the right column shows the feeds' freshness whole, under the alerts
    assert right_column["bottom"] <= min(height, right_column["columnBottom"]), right_column
    assert right_column["clipped"] == [], right_column
    assert right_column["broken"] == [], right_column
    assert [name["text"] for name in right_column["names"]] == sorted(FEED_NAMES)
    for name in right_column["names"]:
        # on one line: the demo's feeds whole, a longer name shortened with "…" (its scrollWidth
        # is then its full length), the full name on hover
        assert name["nowrap"] and name["ellipsis"], name
        assert name["fits"] == name["text"].startswith("simulator"), name
        assert name["title"] == name["text"], name
    assert cut == []
    assert units_shown == "987.7M"  # shortened to fit, the exact figure on hover
    assert units_exact == "Mismatch units: 987,654,321"
    assert value_size >= 48 * width / 1920  # readable from three metres


def test_kiosk_tiles_say_good_watch_or_bad_and_which_way_they_moved(page, manager):
    def build():
        site, sku = site_make("ams"), sku_make("TEA")
        now = timezone.now()
        receive(site, sku, 5, now - dt.timedelta(minutes=30))
        # the previous hour had one delivery, this one three; one of them wrong (67 %: bad)
        deliver(site, now - dt.timedelta(minutes=90))
        for accurate in (True, True, False):
            deliver(site, now - dt.timedelta(minutes=10), accurate=accurate)
        record(
            count(site, sku, now - dt.timedelta(minutes=5), counted=3),
            # an order took more than there was: negative stock
            move(site, sku, MovementKind.TRANSFER_OUT, now - dt.timedelta(minutes=4), on_hand=-4),
        )

    in_thread(build)
    with daphne_server() as daphne:
        kiosk_open(page, daphne.base_url, 1920, 1080)
        tiles = page.evaluate(
            """() => Object.fromEntries([...document.querySelectorAll('[data-tile]')].map(
                 tile => [tile.dataset.tile, {
                   state: tile.dataset.tileState || null,
                   meta: tile.querySelector('.tile-meta').innerText.replace(/\\s+/g, ' ').trim(),
                 }]))"""
        )
        stockouts_chart = page.text_content("#chart-worst-stockouts")
        accuracy_ticks = page.eval_on_selector_all(
            "#chart-turnover-accuracy .y2tick text", "ticks => ticks.map(t => t.textContent)"
        )

    assert tiles["order_accuracy"]["state"] == "bad"
    assert tiles["order_accuracy"]["meta"].startswith("✕ Bad")
    assert tiles["negative_stock"]["state"] == "bad"
    assert tiles["stockouts"]["state"] in ("ok", "watch")
    assert tiles["deliveries"]["state"] is None  # a volume: nothing right or wrong about it
    # 3 against the previous hour's 1 (the words are for screen readers)
    assert tiles["deliveries"]["meta"] == "▲ +2 against the previous 1h"
    # stock as it stands now has no previous window to compare with: the state alone
    assert tiles["negative_stock"]["meta"] == "✕ Bad"
    # negative stock never ordered is no stockout: the chart says so instead of "no data"
    assert "No stockouts now" in stockouts_chart
    assert accuracy_ticks == ["0%", "25%", "50%", "75%", "100%"]


def offline_banner_wait(page, timeout_ms: float) -> float:
    """Wait until the board is visibly offline; return how long it took in seconds."""
    started = time.monotonic()
    page.wait_for_function(
        """() => {
          const banner = document.getElementById('offline-banner');
          const board = document.getElementById('dashboard');
          return banner.offsetHeight > 0 && banner.textContent.startsWith('OFFLINE')
            && parseFloat(getComputedStyle(board).opacity) < 0.6;
        }""",
        timeout=timeout_ms,
    )
    return time.monotonic() - started


def test_a_kiosk_whose_server_goes_away_is_visibly_offline_within_5s_then_live_again(page, manager):
    in_thread(site_make, "ams")
    with daphne_server() as daphne:
        port = int(daphne.base_url.rsplit(":", 1)[1])
        kiosk_open(page, daphne.base_url, 1920, 1080)
        banner_live_height = page.eval_on_selector("#offline-banner", "e => e.offsetHeight")
    offline_after_s = offline_banner_wait(page, timeout_ms=5000)
    banner_size = page.eval_on_selector(
        "#offline-banner", "e => parseFloat(getComputedStyle(e).fontSize)"
    )
    with daphne_server(port):
        live_state_wait(page, "live", timeout_ms=20_000)
        banner_back_height = page.eval_on_selector("#offline-banner", "e => e.offsetHeight")

    assert banner_live_height == 0
    assert offline_after_s < 5
    assert banner_size >= 40  # px: seen from across the floor
    assert banner_back_height == 0


def test_a_kiosk_that_loses_the_network_says_so_within_5s(page, manager):
    # The socket is not closed when the network goes: only the heartbeat can tell.
    in_thread(site_make, "ams")
    with daphne_server() as daphne:
        kiosk_open(page, daphne.base_url, 1920, 1080)
        page.context.set_offline(True)
        try:
            offline_after_s = offline_banner_wait(page, timeout_ms=6000)
        finally:
            page.context.set_offline(False)
        live_state_wait(page, "live", timeout_ms=15_000)

    assert offline_after_s < 5


def test_a_frozen_server_turns_the_kiosk_offline_within_5s_then_live_again(page, manager):
    in_thread(site_make, "ams")
    with daphne_server() as daphne:
        kiosk_open(page, daphne.base_url, 1920, 1080)
        os.kill(daphne.pid, signal.SIGSTOP)  # the socket stays open, nothing comes
        try:
            offline_after_s = offline_banner_wait(page, timeout_ms=6000)
            badge = page.text_content("#live-badge")
        finally:
            os.kill(daphne.pid, signal.SIGCONT)
        live_state_wait(page, "live", timeout_ms=15_000)

    assert offline_after_s < 5
    assert badge.startswith("Connection lost, reconnecting… data from ")


def test_a_kiosk_whose_session_ends_says_so_and_returns_to_the_login(chromium, manager):
    in_thread(site_make, "ams")
    context = chromium.new_context(viewport={"width": 1920, "height": 1080})
    kiosk, desk = context.new_page(), context.new_page()
    with daphne_server() as daphne:
        kiosk_open(kiosk, daphne.base_url, 1920, 1080)
        # the same browser logs out at a desk
        desk.goto(f"{daphne.base_url}/sites/ams/")
        desk.click("text=Log out")
        kiosk.wait_for_function(
            "() => document.getElementById('live-root').dataset.session === 'ended'",
            timeout=10_000,
        )
        banner = kiosk.text_content("#offline-banner")
        state = kiosk.evaluate("document.getElementById('live-root').dataset.liveState")
        kiosk.wait_for_url(f"{daphne.base_url}/accounts/login/?next=*", timeout=10_000)
    context.close()

    assert banner.startswith("Signed out")
    assert state == "stale"  # never "live" once the session is gone


def test_a_kiosk_opened_after_its_session_ended_says_signed_out(chromium, manager):
    # The socket's handshake is refused (403) like a failed connection: the page finds out.
    in_thread(site_make, "ams")
    context = chromium.new_context(viewport={"width": 1920, "height": 1080})
    page = context.new_page()
    with daphne_server() as daphne:
        kiosk_open(page, daphne.base_url, 1920, 1080)
        context.clear_cookies()
        # a restart of the server drops the socket: the reconnect has no session
        page.context.set_offline(True)
        page.wait_for_function(
            "() => document.getElementById('live-root').dataset.liveState === 'reconnecting'",
            timeout=6000,
        )
        page.context.set_offline(False)
        page.wait_for_function(
            "() => document.getElementById('live-root').dataset.session === 'ended'",
            timeout=15_000,
        )
    context.close()


PHONE_WIDTH_FITS = """() => document.documentElement.scrollWidth <= innerWidth"""


def reachable(page, selector: str) -> bool:
    """Whether the element is on screen sideways (a phone scrolls down, never across)."""
    box = page.locator(selector).first.bounding_box()
    return box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]


def phone_pages_build() -> int:
    from core.roles import ON_CALL
    from oncall.services import alerts_evaluate
    from tests.oncall.test_alerts import dispatch, negative_stock_rule

    user_make("engineer", role=ON_CALL, is_staff=True)
    site = site_make("ams", name=HOSTILE_NAME)
    sku = sku_make("TEA-" + "X" * 60, name="<i>Tea</i> " + "very long product name " * 4)
    record(
        move(site, sku, MovementKind.RECEIVED, timezone.now(), on_hand=987_654_321),
        dispatch(site, sku, 987_654_322),
    )
    negative_stock_rule(site)
    alerts_evaluate(site_codes=None)
    from oncall.models import Alert

    return Alert.objects.get().pk


def test_every_page_a_user_reaches_fits_a_phone_with_log_out_and_acknowledge_on_screen(
    chromium, manager
):
    alert_id = in_thread(phone_pages_build)
    sku_path = "/skus/TEA-" + "X" * 60 + "/"
    pages = {
        "boss": [
            "/",
            "/sites/ams/",
            "/?window=24h",
            f"{sku_path}?site=ams",
            sku_path,
            "/couriers/",
        ],
        "engineer": ["/", "/oncall/", f"/oncall/alerts/{alert_id}/", "/oncall/runbooks/"],
    }
    too_wide, log_out_off, acknowledge_off = [], [], []
    dashboard_tiles, cut = [], None
    with daphne_server() as daphne:
        for username, paths in pages.items():
            context = chromium.new_context(viewport=PHONE)
            page = context.new_page()
            log_in(page, daphne.base_url, username=username, password=PASSWORD)
            for path in paths:
                page.goto(f"{daphne.base_url}{path}")
                page.wait_for_load_state("networkidle")
                if not page.evaluate(PHONE_WIDTH_FITS):
                    too_wide.append(
                        (username, path, page.evaluate("document.documentElement.scrollWidth"))
                    )
                if not reachable(page, "text=Log out"):
                    log_out_off.append((username, path))
                alert_page = path.startswith("/oncall/") and "runbooks" not in path
                if alert_page and not reachable(page, "button:has-text('Acknowledge')"):
                    acknowledge_off.append(path)
            if username == "boss":
                page.goto(f"{daphne.base_url}/")
                dashboard_tiles = page.evaluate(
                    "() => [...document.querySelectorAll('.tile')]"
                    ".map(tile => tile.getBoundingClientRect().height)"
                )
                cut = page.evaluate(CUT_TILE_VALUES)
            context.close()

    assert too_wide == [], too_wide
    assert log_out_off == []
    assert acknowledge_off == []
    assert cut == []
    assert max(dashboard_tiles) < 160  # compact: two across, not fifteen screens of tiles
