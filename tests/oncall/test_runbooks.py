from pathlib import Path

import pytest
from django.core.management import call_command
from django.utils import timezone

from core.roles import MANAGERS, ON_CALL, STOCK_STAFF
from ledger.models import MovementKind
from ledger.services import MovementRequest, movements_record
from oncall.models import AlertKind, Runbook, RunbookVersion
from oncall.runbooks import markdown_render_safe
from oncall.services import runbook_save, runbooks_load
from tests.builders import site_make, sku_make, user_make

pytestmark = pytest.mark.django_db

SHIPPED = Path(__file__).resolve().parents[2] / "docs" / "runbooks"
SPEC_RUNBOOKS = {
    "negative-stock",
    "duplicate-or-stuck-events",
    "stuck-or-failed-ingest-jobs",
    "feed-lag",
    "dead-letters-growing",
    "stock-mismatch",
    "redis-or-database-unreachable",
}
HOSTILE_MARKDOWN = """# Steps

<script>alert('runbook')</script>

<img src="x" onerror="alert('img')">

[click me](javascript:alert('link'))

<a href="https://example.com" onclick="alert('a')">docs</a>
"""


def assert_inert(html: str) -> None:
    assert "<script>alert(" not in html
    assert "onerror=" not in html
    assert "onclick=" not in html
    assert "javascript:" not in html


def runbook_make(body="Steps", slug="negative-stock", kinds=("negative_stock",)) -> Runbook:
    runbook = Runbook(
        slug=slug,
        title="Negative stock",
        owner="ops",
        last_reviewed=timezone.now().date(),
        alert_kinds=list(kinds),
        diagnostics=["negative_stock", "readiness"],
        body=body,
    )
    runbook_save(runbook=runbook, edited_by=None)
    return runbook


def logged_in(client, role):
    user = user_make(role=role, is_staff=True)
    client.force_login(user)
    return user


def test_markdown_is_rendered_and_script_is_removed():
    html = str(markdown_render_safe(HOSTILE_MARKDOWN))

    assert "<h1>Steps</h1>" in html
    assert 'href="https://example.com"' in html
    assert 'rel="noopener noreferrer"' in html
    assert_inert(html)


def test_the_shipped_runbooks_cover_every_kind_spec_md_names_and_load_idempotently():
    call_command("load_runbooks")
    call_command("load_runbooks")

    runbooks = {runbook.slug: runbook for runbook in Runbook.objects.all()}
    assert set(runbooks) >= SPEC_RUNBOOKS
    assert RunbookVersion.objects.count() == len(runbooks)  # the second load changed nothing
    covered = {kind for runbook in runbooks.values() for kind in runbook.alert_kinds}
    assert covered == set(AlertKind.values)
    for runbook in runbooks.values():
        assert runbook.owner and runbook.last_reviewed and runbook.diagnostics
        assert "python manage.py" in runbook.body or "/oncall/" in runbook.body


def test_a_changed_file_updates_its_runbook_as_a_new_version_but_an_admin_edit_is_kept(tmp_path):
    source = (SHIPPED / "feed-lag.md").read_text()
    (tmp_path / "feed-lag.md").write_text(source)
    (tmp_path / "negative-stock.md").write_text((SHIPPED / "negative-stock.md").read_text())
    runbooks_load(directory=tmp_path)
    edited = Runbook.objects.get(slug="negative-stock")
    edited.body += "\nLocal note from on-call.\n"
    runbook_save(runbook=edited, edited_by=user_make(role=ON_CALL))
    (tmp_path / "feed-lag.md").write_text(source + "\nOne more step.\n")
    (tmp_path / "negative-stock.md").write_text(
        (SHIPPED / "negative-stock.md").read_text() + "\nShipped change.\n"
    )

    outcome = runbooks_load(directory=tmp_path)

    assert outcome["updated"] == ["feed-lag"]
    assert outcome["kept"] == ["negative-stock"]
    feed_lag = Runbook.objects.get(slug="feed-lag")
    assert feed_lag.body.endswith("One more step.\n")
    assert list(feed_lag.versions.values_list("number", flat=True)) == [2, 1]
    assert "Local note from on-call." in Runbook.objects.get(slug="negative-stock").body


def test_every_admin_edit_is_kept_as_a_version(client):
    runbook = runbook_make(body="first")
    editor = logged_in(client, ON_CALL)

    response = client.post(
        f"/admin/oncall/runbook/{runbook.pk}/change/",
        {
            "slug": runbook.slug,
            "title": "Negative stock",
            "owner": "inventory team",
            "last_reviewed": "2026-11-20",
            "alert_kinds": ["negative_stock"],
            "diagnostics": ["negative_stock"],
            "body": "second",
            "versions-TOTAL_FORMS": "0",
            "versions-INITIAL_FORMS": "0",
        },
    )

    assert response.status_code == 302
    versions = list(runbook.versions.order_by("number"))
    assert [(v.number, v.body, v.edited_by) for v in versions] == [
        (1, "first", None),
        (2, "second", editor),
    ]
    old = client.get(f"/oncall/runbooks/{runbook.slug}/versions/1/")
    assert old.status_code == 200 and "first" in old.text


def test_script_in_a_runbook_is_inert_on_every_page_that_shows_it(client):
    runbook = runbook_make(body=HOSTILE_MARKDOWN)
    runbook.title = "<script>alert('title')</script>"
    runbook_save(runbook=runbook, edited_by=None)
    logged_in(client, ON_CALL)

    pages = [
        client.get(f"/oncall/runbooks/{runbook.slug}/"),
        client.get(f"/oncall/runbooks/{runbook.slug}/versions/1/"),
        client.get(f"/oncall/runbooks/{runbook.slug}/versions/2/"),
        client.get("/oncall/runbooks/"),
    ]

    for page in pages:
        assert page.status_code == 200
        assert_inert(page.text)
    assert "&lt;script&gt;alert(&#x27;title&#x27;)" in pages[0].text


@pytest.mark.parametrize(
    ("role", "status"), [(ON_CALL, 200), (MANAGERS, 200), (STOCK_STAFF, 200), (None, 403)]
)
def test_runbook_pages_need_a_role(client, role, status):
    runbook = runbook_make()
    logged_in(client, role)

    assert client.get(f"/oncall/runbooks/{runbook.slug}/").status_code == status
    assert client.get("/oncall/runbooks/").status_code == status


def test_a_runbook_page_runs_its_diagnostics(client):
    runbook = runbook_make()
    logged_in(client, ON_CALL)

    page = client.get(f"/oncall/runbooks/{runbook.slug}/")

    assert 'data-diagnostic="negative_stock"' in page.text
    assert 'data-check="database"' in page.text
    assert "reachable" in page.text


def test_a_sku_name_with_script_is_inert_in_a_runbooks_diagnostics(client):
    site, sku = site_make(), sku_make(name="<script>alert('count')</script>")
    movements_record(
        requests=[
            MovementRequest(
                site=site.code,
                sku=sku.code,
                kind=MovementKind.COUNTED,
                counted_qty=3,
                occurred_at=timezone.now(),
            )
        ]
    )
    runbook = runbook_make()
    runbook.diagnostics = ["count_mismatches", "negative_stock"]
    runbook_save(runbook=runbook, edited_by=None)
    logged_in(client, ON_CALL)

    page = client.get(f"/oncall/runbooks/{runbook.slug}/")

    assert 'data-diagnostic="count_mismatches"' in page.text
    assert "<script>alert('count')" not in page.text
    assert "&lt;script&gt;alert(" in page.text
