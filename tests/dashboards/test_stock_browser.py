"""The stock browser (`/stock/`): every logged-in role finds a SKU's stock by code or name,
per site, page by page; bad input is said, never a 500; read-only."""

import pytest
from django.test import Client

from core.roles import MANAGERS, ON_CALL, STOCK_STAFF
from dashboards.stock_browser import STOCK_PAGE_SIZE
from ledger.models import SiteReorderPoint
from ledger.services import movements_record
from tests.builders import dispatch, receive, site_make, sku_make, user_make

pytestmark = pytest.mark.django_db


@pytest.fixture
def shop():
    """ams and rtm; MILK-1L (reorder 40) and COFFEE-500 (reorder 20) at both."""
    ams, rtm = site_make("ams"), site_make("rtm")
    milk = sku_make("MILK-1L", name="Organic whole milk 1 L", reorder_point=40)
    coffee = sku_make("COFFEE-500", name="Coffee beans 500 g", reorder_point=20)
    movements_record(
        requests=[
            receive(ams, milk, 100),
            receive(rtm, milk, 30),  # below its reorder point
            receive(ams, coffee, 5),
            dispatch(ams, coffee, 5),  # out
            receive(rtm, coffee, 50),
        ]
    )
    # rtm's own reorder point for coffee wins over the SKU's
    SiteReorderPoint.objects.create(site=rtm, sku=coffee, reorder_point=60)
    return ams, rtm


def signed_in(role: str | None) -> Client:
    client = Client()
    client.force_login(user_make(role=role))
    return client


def rows(response) -> list[str]:
    return [row.split('"')[0] for row in response.content.decode().split('data-stock-row="')[1:]]


@pytest.mark.parametrize("role", [None, MANAGERS, STOCK_STAFF, ON_CALL])
def test_every_logged_in_role_finds_a_sku_by_part_of_its_code_or_name(shop, role):
    client = signed_in(role)

    by_code = client.get("/stock/", {"q": "milk"})
    by_name = client.get("/stock/", {"q": "BEANS"})
    header = client.get("/").content.decode()

    assert by_code.status_code == by_name.status_code == 200
    assert rows(by_code) == ["ams/MILK-1L", "rtm/MILK-1L"]
    assert rows(by_name) == ["ams/COFFEE-500", "rtm/COFFEE-500"]
    assert '<a href="/stock/">Stock</a>' in header


def test_a_site_filter_and_the_levels_state_and_reorder_point(shop):
    page = signed_in(STOCK_STAFF).get("/stock/", {"site": "rtm"}).content.decode()

    assert page.count("data-stock-row=") == 2
    assert 'data-stock-row="rtm/MILK-1L" class="stock--low"' in page  # 30 < 40
    assert 'data-stock-row="rtm/COFFEE-500" class="stock--low"' in page  # 50 < 60 (site's own)
    assert ">60</td>" in page
    everywhere = signed_in(STOCK_STAFF).get("/stock/").content.decode()
    assert 'data-stock-row="ams/COFFEE-500" class="stock--out"' in everywhere
    assert 'data-stock-row="ams/MILK-1L">' in everywhere


def test_pages_keep_the_search_and_the_filter():
    site = site_make("ams")
    skus = [sku_make(f"TEA-{number:03}") for number in range(STOCK_PAGE_SIZE + 3)]
    movements_record(requests=[receive(site, sku, 1) for sku in skus])
    client = signed_in(None)

    first = client.get("/stock/", {"q": "tea", "site": "ams"})
    second = client.get("/stock/", {"q": "tea", "site": "ams", "page": "2"})
    beyond = client.get("/stock/", {"q": "tea", "page": "999999999999999999999"})
    nonsense = client.get("/stock/", {"page": "<script>"})

    assert len(rows(first)) == STOCK_PAGE_SIZE
    assert 'href="?q=tea&amp;site=ams&amp;page=2"' in first.content.decode()
    assert rows(second) == ["ams/TEA-050", "ams/TEA-051", "ams/TEA-052"]
    assert beyond.status_code == nonsense.status_code == 200  # the last page, the first page
    assert rows(beyond) == rows(second) and len(rows(nonsense)) == STOCK_PAGE_SIZE


def test_bad_input_is_said_and_nothing_is_lost(shop):
    client = signed_in(None)

    unknown_site = client.get("/stock/", {"site": "nowhere", "q": "milk"})
    too_long = client.get("/stock/", {"q": "x" * 500})
    hostile = client.get("/stock/", {"q": "<script>alert(1)</script>"})
    nothing = client.get("/stock/", {"q": "caviar"})

    assert unknown_site.status_code == 200
    assert "There is no site with the code &#x27;nowhere&#x27;; showing every site." in (
        unknown_site.content.decode()
    )
    assert rows(unknown_site) == ["ams/MILK-1L", "rtm/MILK-1L"]
    assert "use at most 100" in too_long.content.decode()
    assert "<script>alert(1)</script>" not in hostile.content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in hostile.content.decode()
    assert "No stock level matches <q>caviar</q>" in nothing.content.decode()


def test_read_only_and_for_people_only(shop):
    assert signed_in(MANAGERS).post("/stock/", {"q": "milk"}).status_code == 405
    anonymous = Client().get("/stock/")
    assert anonymous.status_code == 302 and "/accounts/login/" in anonymous["Location"]
