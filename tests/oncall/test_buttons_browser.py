"""Every state-changing button of the on-call screens and of the dead-letter admin, clicked in
Chromium against a real Daphne, Redis and database: what the person sees, and what changed.

A test that posts straight to a URL passes even when the button on the page posts somewhere
else, or nowhere (a form nested in another form is dropped by browsers): these click.
"""

import time

import django_rq
import pytest
from django.utils import timezone
from rq.registry import FailedJobRegistry

from core.roles import ON_CALL
from ingest.models import DeadLetter, DeadLetterStatus
from ledger.models import Site, Sku, StockLevel
from ledger.services import movements_record
from oncall.models import Alert, AlertStatus, RemediationAction, Runbook
from oncall.services import alerts_evaluate, runbook_save
from tests.browser.conftest import chromium, in_thread, log_in  # noqa: F401 (fixtures)
from tests.builders import receive, site_make, sku_make, user_make
from tests.ingest.helpers import batch_apply, received, source_make
from tests.oncall.test_alerts import dispatch, negative_stock_rule
from tests.processes import daphne_server, rq_worker
from tests.redis_db import redis_test_db_flush

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

PASSWORD = "pw-for-tests"


def on_call_page(chromium, base_url):  # noqa: F811
    page = chromium.new_context(viewport={"width": 1366, "height": 900}).new_page()
    log_in(page, base_url, username="engineer", password=PASSWORD)
    return page


def open_negative_stock_alert() -> int:
    redis_test_db_flush()
    user_make("engineer", role=ON_CALL, is_staff=True)
    site = site_make("ams")
    negative_stock_rule(site)
    movements_record(requests=[dispatch(site, sku_make("TEA"), 3)])
    alerts_evaluate(site_codes=None)
    return Alert.objects.get(status=AlertStatus.OPEN).pk


def stock_restore() -> None:
    """The shelf recounted: what `open_negative_stock_alert` dispatched is back."""
    movements_record(
        requests=[receive(Site.objects.get(code="ams"), Sku.objects.get(code="TEA"), 3)]
    )


def alert_status(pk: int) -> str:
    return Alert.objects.get(pk=pk).status


def test_on_call_acknowledges_then_resolves_an_alert_from_its_page(chromium):  # noqa: F811
    alert_id = in_thread(open_negative_stock_alert)

    with daphne_server() as daphne:
        page = on_call_page(chromium, daphne.base_url)
        page.goto(f"{daphne.base_url}/oncall/alerts/{alert_id}/")

        # when they write a note and click Acknowledge
        acknowledge = page.locator("form", has=page.locator("button", has_text="Acknowledge"))
        acknowledge.locator("input[name=note]").fill("looking at the shelf")
        acknowledge.locator("button").click()

        # then the page says so, and the alert is acknowledged with its note
        page.wait_for_selector(f"text=Alert #{alert_id} acknowledged.")
        assert in_thread(alert_status, alert_id) == AlertStatus.ACKNOWLEDGED
        assert page.locator("button", has_text="Acknowledge").count() == 0

        # and when they click Resolve while the stock is still negative
        resolve = page.locator("form", has=page.locator("button", has_text="Resolve"))
        resolve.locator("input[name=note]").fill("recounted")
        resolve.locator("button").click()

        # then the page refuses at the resolve form, says why, keeps the note, offers a silence
        refusal = page.locator("#resolve-error")
        refusal.wait_for()
        assert "Not resolved: the condition still holds (value 1" in refusal.inner_text()
        assert page.locator("#resolve-note").input_value() == "recounted"
        refusal.get_by_role("link", name="silence it below").click()
        assert page.locator("form.silence-form").is_visible()
        assert in_thread(alert_status, alert_id) == AlertStatus.ACKNOWLEDGED

        # when the stock is put right and they click Resolve again
        in_thread(stock_restore)
        page.get_by_role("button", name="Resolve").click()

        # then the page says it is resolved, and it is
        page.wait_for_selector(f"text=Alert #{alert_id} resolved.")
    assert in_thread(alert_status, alert_id) == AlertStatus.RESOLVED

    def notes():
        return list(
            Alert.objects.get(pk=alert_id).transitions.order_by("at").values_list("note", flat=True)
        )

    assert in_thread(notes)[-2:] == ["looking at the shelf", "recounted"]


def dead_letters_of_an_unknown_sku() -> None:
    redis_test_db_flush()
    user_make("engineer", role=ON_CALL, is_staff=True)
    site_make("ams")
    source, _ = source_make("courier-app")
    # two receipts of a SKU the catalog does not have yet: dead letters "unknown SKU"
    batch_apply(source, [received("NEW", 4, site="ams"), received("NEW", 6, site="ams")])
    sku_make("NEW")  # the cause is fixed: a replay applies them


def failed_job_in_a_worker() -> str:
    """A job that failed in a real worker process (RQ's own code path)."""
    queue = django_rq.get_queue("ingest", commit_mode="auto")
    job = queue.enqueue("tests.oncall.test_console.explode")
    with rq_worker("ingest", log_name="worker-failing-a-job"):
        deadline = time.monotonic() + 60
        while FailedJobRegistry(queue=queue).count < 1:
            assert time.monotonic() < deadline, "the job did not fail in the worker"
            time.sleep(0.1)
    return job.id


def requeued(job_id: str) -> tuple[bool, int]:
    queue = django_rq.get_queue("ingest")
    return job_id in queue.job_ids, FailedJobRegistry(queue=queue).count


def new_stock() -> int | None:
    level = StockLevel.objects.filter(site__code="ams", sku__code="NEW").first()
    return level.on_hand if level else None


def test_on_call_requeues_a_failed_job_and_replays_dead_letters_from_the_console(
    chromium,  # noqa: F811
):
    in_thread(dead_letters_of_an_unknown_sku)
    job_id = failed_job_in_a_worker()

    with daphne_server() as daphne:
        page = on_call_page(chromium, daphne.base_url)
        page.goto(f"{daphne.base_url}/oncall/")

        # when they click Requeue beside the failed job
        page.locator(f'[data-job-id="{job_id}"]').locator("button", has_text="Requeue").click()

        # then the page reports it, the job is back on its queue, and no failed job is left
        page.wait_for_selector("text=requeued 1 job(s)")
        assert in_thread(requeued, job_id) == (True, 0)
        assert page.locator(f'[data-job-id="{job_id}"]').count() == 0

        # when they click "Replay 2" beside the unknown-SKU dead letters
        page.locator("button", has_text="Replay 2").click()

        # then the page reports the replay, and the stock holds the two receipts
        page.wait_for_selector(".messages >> text=2 applied")
        assert in_thread(new_stock) == 10
        assert page.locator("button", has_text="Replay 2").count() == 0

        # when they ask for a KPI rebuild of the site
        page.select_option("select[name=site]", "ams")
        page.locator("button", has_text="Rebuild KPIs").click()

        # then the page says it is under way, and its job is on the queue
        page.wait_for_selector(".messages >> text=running")

    def actions():
        return dict(RemediationAction.objects.values_list("kind", "result"))

    recorded = in_thread(actions)
    assert sorted(recorded) == ["rebuild_kpis", "replay_dead_letters", "requeue_failed_jobs"]
    assert recorded["rebuild_kpis"].startswith("enqueued as job")


def runbook_with_open_alert() -> int:
    alert_id = open_negative_stock_alert()
    runbook_save(
        runbook=Runbook(
            slug="negative-stock",
            title="Negative stock",
            owner="ops",
            last_reviewed=timezone.now().date(),
            alert_kinds=["negative_stock"],
            diagnostics=["negative_stock"],
            body="Recount the shelf.",
        ),
        edited_by=None,
    )
    return alert_id


def test_on_call_acknowledges_an_alert_from_its_runbook(chromium):  # noqa: F811
    alert_id = in_thread(runbook_with_open_alert)

    with daphne_server() as daphne:
        page = on_call_page(chromium, daphne.base_url)
        page.goto(f"{daphne.base_url}/oncall/runbooks/negative-stock/")

        # when they click Acknowledge on the open alert the runbook covers, with a note
        page.locator("input[name=note][required]").first.fill("recounting the shelf")
        page.locator("button", has_text="Acknowledge").first.click()

        # then they are back on the runbook, told so, and the alert is acknowledged
        page.wait_for_selector(f"text=Alert #{alert_id} acknowledged.")
        assert page.url.endswith("/oncall/runbooks/negative-stock/")
    assert in_thread(alert_status, alert_id) == AlertStatus.ACKNOWLEDGED


def dead_letters_to_handle() -> list[int]:
    redis_test_db_flush()
    user_make("engineer", role=ON_CALL, is_staff=True)
    site_make("ams")
    source, _ = source_make("courier-app")
    batch_apply(source, [received("NEW", 4, site="ams"), received("GONE", 1, site="ams")])
    sku_make("NEW")
    return list(DeadLetter.objects.order_by("index").values_list("pk", flat=True))


def letters() -> list[tuple[str, str]]:
    return list(DeadLetter.objects.order_by("index").values_list("status", "discard_note"))


def test_on_call_replays_and_discards_dead_letters_in_the_admin(chromium):  # noqa: F811
    replayable, hopeless = in_thread(dead_letters_to_handle)
    changelist = "/admin/ingest/deadletter/"

    with daphne_server() as daphne:
        page = on_call_page(chromium, daphne.base_url)

        # when they tick the replayable letter and run "Replay the selected dead letters"
        page.goto(f"{daphne.base_url}{changelist}")
        page.check(f"input[name=_selected_action][value='{replayable}']")
        page.select_option("select[name=action]", "replay_selected")
        page.click("button[name=index]")

        # then the page reports it applied, and the stock holds it
        page.wait_for_selector("text=Replayed: 1 applied")
        assert in_thread(new_stock) == 4

        # when they tick the other, choose discard, and confirm with a note
        page.check(f"input[name=_selected_action][value='{hopeless}']")
        page.select_option("select[name=action]", "discard_selected")
        page.click("button[name=index]")
        page.fill("textarea[name=note]", "SKU GONE was withdrawn")
        page.click("input[type=submit][value=Discard]")

        # then the page reports it, and the letter is discarded with the note
        page.wait_for_selector("text=Discarded 1 dead letter(s).")
    assert in_thread(letters) == [
        (DeadLetterStatus.REPLAYED, ""),
        (DeadLetterStatus.DISCARDED, "SKU GONE was withdrawn"),
    ]
