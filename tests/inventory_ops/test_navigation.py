"""Navigation per role: every link a user is shown leads somewhere they may go."""

import re
from html import unescape
from urllib.parse import urljoin, urlsplit

import pytest
from django.test import Client

from core.roles import MANAGERS, ON_CALL, STOCK_STAFF
from tests.access import NO_GROUP, SUPERUSER, world_make

pytestmark = pytest.mark.django_db

LINK = re.compile(r'<a\b[^>]*\bhref="([^"]+)"')


@pytest.fixture
def world():
    return world_make()


def client_for(world, visitor) -> Client:
    client = Client()
    client.force_login(world.users[visitor])
    return client


def links_on(html: str, page_url: str) -> set[str]:
    """The same-site links of a page, resolved against it."""
    found = set()
    for href in LINK.findall(html):
        url = urljoin(page_url, unescape(href))
        parts = urlsplit(url)
        if parts.scheme or parts.netloc or not parts.path.startswith("/"):
            continue  # another site, mailto:, javascript:
        found.add(parts.path + (f"?{parts.query}" if parts.query else ""))
    return found


def start_pages(world) -> list[str]:
    return [
        "/",
        "/sites/ams/",
        "/skus/TEA/?site=ams",
        "/stock/?q=TEA",
        "/oncall/",
        "/oncall/runbooks/",
        "/oncall/runbooks/negative-stock/",
        "/admin/",
        f"/admin/corrections/correction/{world.pk('corrections.correction:pending')}/change/",
        f"/admin/corrections/countsheet/{world.pk('corrections.countsheet:pending')}/change/",
    ]


@pytest.mark.parametrize("visitor", [NO_GROUP, MANAGERS, STOCK_STAFF, ON_CALL, SUPERUSER])
def test_no_link_shown_to_a_user_answers_403(world, visitor):
    # given a user of this kind, on every page they may open among the main ones
    client = client_for(world, visitor)
    shown: dict[str, str] = {}
    for page in start_pages(world):
        response = client.get(page)
        if response.status_code == 200:
            for link in links_on(response.text, page):
                shown.setdefault(link, page)

    # when they follow each link they are shown
    refused = {
        link: f"shown on {page}"
        for link, page in sorted(shown.items())
        if client.get(link).status_code == 403
    }

    # then none is refused
    assert refused == {}
    assert len(shown) > 3


def test_managers_see_what_waits_for_approval_with_its_count_in_the_header(world):
    # given one correction and one count sheet waiting
    manager, staff = client_for(world, MANAGERS), client_for(world, STOCK_STAFF)

    # when a manager opens the dashboard and the admin, and stock staff the dashboard
    dashboard, admin_index = manager.get("/"), manager.get("/admin/")
    staff_dashboard = staff.get("/")

    # then the manager's headers show the count and link to the list; stock staff see neither
    link = '<a href="/admin/corrections/correction/waiting/" data-approvals-waiting="2">'
    assert link in dashboard.text and link in admin_index.text
    assert "Waiting for approval (2)" in dashboard.text
    assert "data-approvals-waiting" not in staff_dashboard.text
    waiting = manager.get("/admin/corrections/correction/waiting/")
    correction, sheet = (
        world.pk("corrections.correction:pending"),
        world.pk("corrections.countsheet:pending"),
    )
    assert f'data-waiting="correction:{correction}"' in waiting.text
    assert f'data-waiting="countsheet:{sheet}"' in waiting.text
    assert staff.get("/admin/corrections/correction/waiting/").status_code == 403


def test_links_follow_the_role(world):
    manager, staff, on_call = (client_for(world, role) for role in (MANAGERS, STOCK_STAFF, ON_CALL))

    staff_dashboard = staff.get("/").text
    manager_console = manager.get("/oncall/").text
    on_call_console = on_call.get("/oncall/").text

    # stock staff see the open alert and its runbook, but no link to the alert's page (403)
    assert "Runbook: Negative stock" in staff_dashboard
    assert 'href="/oncall/runbooks/negative-stock/"' in staff_dashboard
    assert 'href="/oncall/alerts/' not in staff_dashboard
    assert 'href="/oncall/alerts/' in manager.get("/").text
    # the RQ queue pages are linked for on-call only
    assert 'href="/admin/rq/"' not in manager_console
    assert 'href="/admin/rq/"' in on_call_console
