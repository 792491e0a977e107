"""The SLO panel as on-call and managers read it: on the on-call console and the all-sites
dashboard (not on a site's dashboard or the floor TV), and alone for its refresh."""

import re

import pytest
from django.test import Client

from core.roles import MANAGERS, ON_CALL
from slos.counters import slo_count
from slos.models import Slo
from tests.builders import site_make, user_make

pytestmark = pytest.mark.django_db


def client_of(role: str) -> Client:
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user_make(role=role, is_staff=role == ON_CALL))
    return client


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def slo_row(html: str, slo: str) -> str:
    match = re.search(rf'<tr data-slo="{slo}".*?</tr>', html, re.S)
    assert match, f"no row for {slo}"
    return match.group(0)


@pytest.fixture
def burning():
    """Freshness: 1,000 events, 31 late (target 99 %: 3.1 budgets spent); correctness fine."""
    slo_count(Slo.FRESHNESS, good=969, total=1000)
    slo_count(Slo.CORRECTNESS, good=100, total=100)


def test_the_on_call_console_shows_each_slo_with_its_budget_and_burn(burning):
    html = client_of(ON_CALL).get("/oncall/").content.decode()

    freshness = slo_row(html, "freshness")
    assert 'data-slo-state="bad"' in freshness
    assert "96.90% of 1,000" in text_of(freshness)
    assert "99.00%" in text_of(freshness)  # the target
    assert "-210%" in text_of(freshness)  # 1 - 3.1 budgets
    assert 'width="0.0"' in freshness  # an overspent budget is an empty bar
    assert "3.1\N{MULTIPLICATION SIGN}" in text_of(freshness)  # 3.1 % bad / 1 % budget
    assert freshness.count('class="slo-day"') == 28
    correctness = slo_row(html, "correctness")
    assert 'data-slo-state="ok"' in correctness
    assert "100%" in text_of(correctness)
    assert 'width="100.0"' in correctness
    assert "no events yet" in text_of(slo_row(html, "ingest_availability"))


def test_managers_see_it_on_the_all_sites_dashboard_not_on_a_site_or_the_tv(burning):
    site_make("north")
    manager = client_of(MANAGERS)

    assert 'id="slo-panel"' in manager.get("/").content.decode()
    assert 'id="slo-panel"' not in manager.get("/sites/north/").content.decode()
    assert 'id="slo-panel"' not in manager.get("/?kiosk=1").content.decode()
    fragment = manager.get("/slos/panel/")
    assert fragment.status_code == 200
    assert fragment.content.decode().startswith('<section id="slo-panel"')


def test_the_panel_is_for_logged_in_users_only():
    answer = Client(HTTP_HOST="127.0.0.1").get("/slos/panel/")
    assert answer.status_code == 302
    assert "/accounts/login/" in answer["Location"]
