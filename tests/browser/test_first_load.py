"""Static files as production serves them: `collectstatic` gives hashed names with gzip and
brotli copies, Daphne (DEBUG off) serves them compressed with a long cache lifetime, and a
browser's first dashboard load transfers at most 1.5 MB. Real collectstatic, Daphne, Chromium."""

import json
import subprocess
import urllib.request

import pytest

from ledger.services import movements_record
from tests.browser.conftest import in_thread, live_state_wait, log_in
from tests.builders import receive, site_make, sku_make, user_make
from tests.processes import daphne_server, manage_py, subprocess_env

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

FIRST_LOAD_BUDGET_BYTES = 1_500_000
A_YEAR_SECONDS = 365 * 24 * 3600


def production_env(static_root) -> dict[str, str]:
    return subprocess_env(
        DEBUG="0", SECRET_KEY="test-secret-key-of-some-length", STATIC_ROOT=str(static_root)
    )


@pytest.fixture(scope="module")
def collected_static(tmp_path_factory):
    static_root = tmp_path_factory.mktemp("staticfiles")
    result = subprocess.run(
        manage_py("collectstatic", "--noinput"),
        env=production_env(static_root),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return static_root


def hashed_url(static_root, name: str) -> str:
    manifest = json.loads((static_root / "staticfiles.json").read_text())
    return f"/static/{manifest['paths'][name]}"


def static_get(url: str, *, accept_encoding: str):
    headers = {"Accept-Encoding": accept_encoding}
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 (a local URL)
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        return response.headers, response.read()


def test_collected_files_are_served_compressed_under_hashed_names_cached_for_a_year(
    collected_static,
):
    plotly_url = hashed_url(collected_static, "vendor/plotly-basic.min.js")
    stylesheet_url = hashed_url(collected_static, "css/app.css")
    plotly_size = (collected_static / plotly_url.removeprefix("/static/")).stat().st_size

    with daphne_server(env=production_env(collected_static)) as daphne:
        login_url = f"{daphne.base_url}/accounts/login/"
        with urllib.request.urlopen(login_url) as response:  # noqa: S310 (a local URL)
            login_page = response.read().decode()
        brotli_headers, brotli_body = static_get(
            f"{daphne.base_url}{plotly_url}", accept_encoding="br, gzip"
        )
        gzip_headers, gzip_body = static_get(
            f"{daphne.base_url}{plotly_url}", accept_encoding="gzip"
        )

    assert f'href="{stylesheet_url}"' in login_page
    assert brotli_headers["Content-Encoding"] == "br"
    assert gzip_headers["Content-Encoding"] == "gzip"
    assert len(brotli_body) < len(gzip_body) < plotly_size / 2
    cache_control = brotli_headers["Cache-Control"]
    assert "immutable" in cache_control
    max_age = int(cache_control.split("max-age=")[1].split(",")[0])
    assert max_age >= A_YEAR_SECONDS


@pytest.mark.browser
def test_the_first_dashboard_load_transfers_at_most_1_5_mb_and_draws_its_charts(
    collected_static, chromium
):
    def given():
        user_make("boss")
        site, sku = site_make("ams"), sku_make("TEA")
        movements_record(requests=[receive(site, sku, 5)])

    in_thread(given)

    with daphne_server(env=production_env(collected_static)) as daphne:
        login_context = chromium.new_context()
        log_in(login_context.new_page(), daphne.base_url, username="boss", password="pw-for-tests")
        # A new context has an empty cache: only the session cookie is carried over.
        context = chromium.new_context(
            storage_state=login_context.storage_state(), viewport={"width": 1366, "height": 768}
        )
        page = context.new_page()
        page.goto(f"{daphne.base_url}/")
        live_state_wait(page, "live", timeout_ms=30_000)
        page.wait_for_selector(".js-plotly-plot .main-svg", timeout=30_000)
        transfers = page.evaluate(
            """() => [...performance.getEntriesByType('navigation'),
                      ...performance.getEntriesByType('resource')].map(entry => ({
                name: entry.name, transferred: entry.transferSize,
                encoded: entry.encodedBodySize, decoded: entry.decodedBodySize}))"""
        )
        context.close()
        login_context.close()

    total = sum(entry["transferred"] for entry in transfers)
    plotly = next(entry for entry in transfers if "plotly" in entry["name"])
    assert total <= FIRST_LOAD_BUDGET_BYTES, json.dumps(transfers, indent=1)
    assert plotly["encoded"] < plotly["decoded"] / 2  # sent compressed
    assert all(entry["transferred"] > 0 for entry in transfers)  # nothing came from a cache
