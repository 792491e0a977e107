"""The stock browser and the not-found pages as their users meet them: stock staff search on a
phone (390 px, nothing off screen, a hostile search shown as text), follow the header link on a
desk, and mistype a site or SKU code (our page, also with DEBUG on as in `make run`)."""

import pytest

from core.roles import STOCK_STAFF
from ledger.services import movements_record
from tests.browser.conftest import in_thread, log_in
from tests.builders import receive, site_make, sku_make, user_make
from tests.processes import daphne_server, subprocess_env

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

PASSWORD = "pw-for-tests"
PHONE = {"width": 390, "height": 844}
HOSTILE = "<script>window.__injected = 1</script>"
FITS_SIDEWAYS = "() => document.documentElement.scrollWidth <= innerWidth"


def shop() -> None:
    user_make("clerk", role=STOCK_STAFF, is_staff=True)
    ams = site_make("ams", name='<b>Amsterdam "Noord"</b> distribution centre')
    rtm = site_make("rtm")
    milk = sku_make("MILK-1L", name="Organic whole milk 1 L", reorder_point=40)
    long_one = sku_make("TEA-" + "X" * 60, name="<i>Tea</i> " + "very long product name " * 4)
    movements_record(
        requests=[
            receive(ams, milk, 987_654_321),
            receive(rtm, milk, 12),
            receive(ams, long_one, 3),
        ]
    )


def test_stock_staff_search_the_stock_on_a_phone(chromium):
    in_thread(shop)
    page = chromium.new_context(viewport=PHONE).new_page()
    with daphne_server() as daphne:
        log_in(page, daphne.base_url, username="clerk", password=PASSWORD)
        page.click("header >> text=Stock")
        page.wait_for_url(f"{daphne.base_url}/stock/")
        everything = page.locator("[data-stock-row]").count()
        wide_all = page.evaluate(FITS_SIDEWAYS)

        page.fill("#stock-q", "milk")
        page.select_option("#stock-site", "rtm")
        page.click("text=Search")
        page.wait_for_url("**/stock/?q=milk&site=rtm")
        found = page.locator("[data-stock-row]").all_inner_texts()
        found_fits = page.evaluate(FITS_SIDEWAYS)
        search_box = page.locator("#stock-q").bounding_box()
        page.click("[data-stock-row] >> text=MILK-1L")
        page.wait_for_url("**/skus/MILK-1L/?site=rtm")
        on_hand = page.locator("[data-level-on-hand]").inner_text()

        page.goto(f"{daphne.base_url}/stock/")
        page.fill("#stock-q", HOSTILE)
        page.click("text=Search")
        page.wait_for_selector("[data-stock-empty]")
        empty = page.locator("[data-stock-empty]").inner_text()
        injected = page.evaluate("() => window.__injected === 1")
        hostile_fits = page.evaluate(FITS_SIDEWAYS)

    assert everything == 3 and wide_all
    assert len(found) == 1 and "MILK-1L" in found[0]
    assert "12 low" in found[0]  # available 12, under its reorder point of 40
    assert found_fits and search_box["x"] + search_box["width"] <= PHONE["width"]
    assert on_hand == "12"
    assert HOSTILE in empty and not injected and hostile_fits


@pytest.mark.parametrize("debug", ["0", "1"])
def test_a_mistyped_site_or_sku_shows_our_page_with_a_way_on(chromium, debug):
    in_thread(shop)
    page = chromium.new_context(viewport=PHONE).new_page()
    with daphne_server(env=subprocess_env(DEBUG=debug)) as daphne:
        log_in(page, daphne.base_url, username="clerk", password=PASSWORD)
        answers = {}
        for path in ("/sites/amx/", "/skus/MILK-2L/", "/skus/MILK-1L/?site=<b>x</b>"):
            response = page.goto(f"{daphne.base_url}{path}")
            answers[path] = (
                response.status,
                page.locator("main").inner_text(),
                page.evaluate(FITS_SIDEWAYS),
                page.locator("header >> text=Log out").is_visible(),
            )
        page.goto(f"{daphne.base_url}/skus/MILK-2L/")
        page.click("text=Search the stock")
        page.wait_for_url("**/stock/?q=MILK-2L")
        page.goto(f"{daphne.base_url}/sites/amx/")
        page.click("main >> text=ams")
        page.wait_for_url(f"{daphne.base_url}/sites/ams/")

    site_status, site_text, site_fits, site_header = answers["/sites/amx/"]
    assert site_status == 404 and site_fits and site_header
    assert "There is no site with the code amx." in site_text
    assert "Sites: ams, rtm" in site_text
    sku_status, sku_text, *_ = answers["/skus/MILK-2L/"]
    assert sku_status == 404 and "There is no SKU with the code MILK-2L." in sku_text
    bad_site_status, bad_site_text, *_ = answers["/skus/MILK-1L/?site=<b>x</b>"]
    assert bad_site_status == 404 and "There is no site with the code <b>x</b>." in bad_site_text
    for _, text, *_ in answers.values():
        assert "URLconf" not in text and "Traceback" not in text


BREADCRUMBS = """() => {
  const crumbs = document.querySelector('.breadcrumbs');
  const style = getComputedStyle(crumbs);
  return {tag: crumbs.tagName, background: style.backgroundColor, padding: style.paddingLeft,
          text: [...crumbs.querySelectorAll('li')].map(li => li.innerText.trim())};
}"""


def test_our_admin_pages_carry_the_admins_own_breadcrumbs(chromium):
    def build():
        shop()
        user_make("root", is_staff=True, is_superuser=True)

    in_thread(build)
    page = chromium.new_context(viewport={"width": 1366, "height": 768}).new_page()
    pages = {
        "/admin/corrections/correction/add/": ["Home", "Corrections", "Correct stock"],
        "/admin/corrections/correction/waiting/": ["Home", "Waiting for approval"],
        "/admin/corrections/countsheet/add/": ["Home", "Count sheets", "Import"],
        "/admin/inventory_ops/sku/import-catalog/": ["Home", "SKUs", "Import catalog"],
    }
    with daphne_server() as daphne:
        log_in(page, daphne.base_url, username="root", password=PASSWORD)
        page.goto(f"{daphne.base_url}/admin/inventory_ops/sku/")
        django_own = page.evaluate(BREADCRUMBS)
        ours = {}
        for path in pages:
            page.goto(f"{daphne.base_url}{path}")
            ours[path] = page.evaluate(BREADCRUMBS)

    for path, trail in pages.items():
        assert ours[path]["text"] == trail, path
        assert ours[path]["tag"] == django_own["tag"] == "OL", path
        assert ours[path]["background"] == django_own["background"] != "rgba(0, 0, 0, 0)", path
        assert ours[path]["padding"] == django_own["padding"], path
