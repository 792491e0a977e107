import re
from decimal import Decimal

import django_rq
import pytest
from django.core.management import get_commands
from django.utils import timezone
from rq.registry import FailedJobRegistry

from core.roles import MANAGERS, ON_CALL, STOCK_STAFF
from ingest.models import DeadLetter, DeadLetterStatus
from ledger.models import MovementKind, StockLevel
from ledger.services import MovementRequest, movements_record
from oncall.jobs import rebuild_kpis_job
from oncall.models import (
    Alert,
    AlertKind,
    AlertRule,
    AlertStatus,
    RemediationAction,
    RemediationStatus,
)
from oncall.selectors import DEFAULT_SILENT_MINUTES
from oncall.services import alerts_evaluate
from tests.builders import receive, site_make, sku_make, user_make
from tests.ingest.helpers import batch_apply, received, source_make
from tests.processes import free_port

pytestmark = pytest.mark.django_db


def explode():
    raise RuntimeError("the feed payload was malformed")


def logged_in(client, role):
    user = user_make(role=role, is_staff=True)
    client.force_login(user)
    return user


def failed_job(queue_name="ingest"):
    """A job that really ran and failed, through RQ's own worker code path."""
    queue = django_rq.get_queue(queue_name, commit_mode="auto")
    job = queue.enqueue(explode)
    worker = django_rq.get_worker(queue_name, worker_class="rq.worker.SimpleWorker")
    worker.work(burst=True)
    assert job.id in FailedJobRegistry(queue=queue).get_job_ids()
    return job


def negative_level(sku_name="Milk"):
    site, sku = site_make(), sku_make(name=sku_name)
    movements_record(
        requests=[
            receive(site, sku, 1),
            MovementRequest(
                site=site.code,
                sku=sku.code,
                kind=MovementKind.ORDER_DISPATCHED,
                on_hand_delta=-3,
                occurred_at=timezone.now(),
                cause_ref="courier:evt-9",
            ),
        ]
    )
    return site, sku


@pytest.mark.parametrize(
    ("role", "status"), [(ON_CALL, 200), (MANAGERS, 200), (STOCK_STAFF, 403), (None, 403)]
)
def test_the_console_is_for_on_call_and_managers(client, redis_clean, role, status):
    logged_in(client, role)

    assert client.get("/oncall/").status_code == status


def test_the_console_loads_htmx_once(client, redis_clean):
    logged_in(client, ON_CALL)

    page = client.get("/oncall/").text

    assert page.count("django_htmx/htmx-2.min.js") == 1


def test_the_console_requires_login(client):
    response = client.get("/oncall/")

    assert response.status_code == 302
    assert "/accounts/login/" in response.url


def test_the_console_shows_negative_stock_with_its_last_movements(client, redis_clean):
    site, sku = negative_level()
    logged_in(client, ON_CALL)

    page = client.get("/oncall/")

    [diagnostic] = [d for d in page.context["diagnostics"] if d.name == "negative_stock"]
    [row] = diagnostic.rows
    assert (row["level"].site, row["level"].sku, row["level"].on_hand) == (site, sku, -2)
    assert [m.cause_ref for m in row["movements"]] == ["courier:evt-9", ""]
    assert "courier:evt-9" in page.text


def test_the_console_lists_failed_jobs_with_their_exception_and_queue_depths(client, redis_clean):
    job = failed_job()
    logged_in(client, ON_CALL)

    page = client.get("/oncall/")

    assert f'data-job-id="{job.id}"' in page.text
    assert "the feed payload was malformed" in page.text
    assert 'data-queue="ingest"' in page.text
    assert "/admin/rq/" in page.text


def test_the_diagnostics_refresh_as_an_htmx_partial(client, redis_clean):
    negative_level()
    logged_in(client, ON_CALL)

    partial = client.get("/oncall/?partial=diagnostics", headers={"HX-Request": "true"})

    assert partial.status_code == 200
    assert partial.text.lstrip().startswith('<div id="live-diagnostics"')
    assert "<html" not in partial.text


@pytest.mark.parametrize(
    ("asked", "used"),
    [("180", "180"), ("0", "1"), ("999999", "10080"), ("soon", str(DEFAULT_SILENT_MINUTES))],
    ids=["as-asked", "at-least-a-minute", "at-most-a-week", "not-a-number"],
)
def test_the_silent_feed_check_uses_the_minutes_asked_from_one_to_a_week(
    client, redis_clean, asked, used
):
    logged_in(client, ON_CALL)

    page = client.get(f"/oncall/?silent_minutes={asked}").text

    # the check and its live refresh both use that many minutes
    assert f'name="silent_minutes" value="{used}"' in page
    assert f'silent_minutes={used}"' in page


def test_the_rebuild_kpis_form_offers_every_site(client, redis_clean):
    site_make("north"), site_make("south")
    logged_in(client, ON_CALL)

    page = client.get("/oncall/").text

    assert '<option value="north">north</option>' in page
    assert '<option value="south">south</option>' in page


def test_on_call_requeues_failed_jobs_and_the_action_is_recorded(client, redis_clean):
    job = failed_job()
    engineer = logged_in(client, ON_CALL)

    response = client.post("/oncall/remediations/requeue/", {"job_id": job.id}, follow=True)

    queue = django_rq.get_queue("ingest")
    assert job.id in queue.job_ids
    assert FailedJobRegistry(queue=queue).count == 0
    action = RemediationAction.objects.get()
    assert (action.actor, action.kind, action.status) == (
        engineer,
        "requeue_failed_jobs",
        RemediationStatus.SUCCEEDED,
    )
    assert f"ingest:{job.id}" in action.result
    assert action.finished_at is not None
    assert "requeued 1 job(s)" in response.text


def test_requeueing_a_job_that_is_not_failed_is_recorded_as_failed(client, redis_clean):
    logged_in(client, ON_CALL)

    client.post("/oncall/remediations/requeue/", {"job_id": "no-such-job"})

    action = RemediationAction.objects.get()
    assert action.status == RemediationStatus.FAILED
    assert "no-such-job: not in a failed job registry" in action.result


def test_requeueing_one_chosen_job_is_recorded_as_that_job_not_all_failed_jobs(client, redis_clean):
    # given two failed jobs on the console
    chosen, left = failed_job(), failed_job()
    logged_in(client, ON_CALL)

    # when on-call presses the Requeue button of one of them (its form sends its id)
    page = client.post(
        "/oncall/remediations/requeue/", {"job_id": chosen.id, "next": "/oncall/"}, follow=True
    )

    # then only that job is back on its queue, and the record names it, not "all failed jobs"
    assert FailedJobRegistry(queue=django_rq.get_queue("ingest")).get_job_ids() == [left.id]
    log = page.text[page.text.index('id="remediation-log"') :]
    assert re.findall(r'<td data-label="Target">([^<]*)</td>', log) == [chosen.id]
    action = RemediationAction.objects.get()
    assert (action.target, action.status) == (chosen.id, RemediationStatus.SUCCEEDED)


@pytest.mark.parametrize("role", [MANAGERS, STOCK_STAFF, None])
def test_remediations_are_refused_to_everyone_but_on_call(client, redis_clean, role):
    job = failed_job()
    site = site_make()
    logged_in(client, role)

    requeue = client.post("/oncall/remediations/requeue/", {"job_id": job.id})
    rebuild = client.post("/oncall/remediations/rebuild-kpis/", {"site": site.code})
    replay = client.post("/oncall/remediations/replay/", {"reason_code": "unknown_sku"})

    assert (requeue.status_code, rebuild.status_code, replay.status_code) == (403, 403, 403)
    assert FailedJobRegistry(queue=django_rq.get_queue("ingest")).count == 1
    assert not RemediationAction.objects.exists()


def test_rebuilding_kpis_runs_in_a_worker_and_records_its_outcome(
    client, redis_clean, django_capture_on_commit_callbacks
):
    site = site_make()
    engineer = logged_in(client, ON_CALL)

    with django_capture_on_commit_callbacks(execute=True):
        client.post("/oncall/remediations/rebuild-kpis/", {"site": site.code})

    action = RemediationAction.objects.get()
    assert (action.actor, action.target, action.status) == (engineer, site.code, "running")
    [job] = django_rq.get_queue("default").jobs
    assert job.args == (action.pk,)

    rebuild_kpis_job(action.pk)

    action.refresh_from_db()
    expected = (
        RemediationStatus.SUCCEEDED
        if "rebuild_kpis" in get_commands()
        else RemediationStatus.FAILED
    )
    assert action.status == expected
    assert action.result and action.finished_at


def test_a_kpi_rebuild_that_finishes_before_it_is_noted_as_queued_keeps_its_outcome(
    client, redis_clean, settings, django_capture_on_commit_callbacks
):
    # given a queue that runs each job the moment it is queued: the fastest worker there can
    # be, done with the rebuild before the console notes the job as queued
    settings.RQ_QUEUES = {
        **settings.RQ_QUEUES,
        "default": {**settings.RQ_QUEUES["default"], "ASYNC": False},
    }
    site = site_make()
    logged_in(client, ON_CALL)

    # when on-call asks for a KPI rebuild of the site
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/oncall/remediations/rebuild-kpis/", {"site": site.code})

    # then the console shows the rebuild's outcome, not "enqueued as job" over it
    action = RemediationAction.objects.get()
    assert action.status == RemediationStatus.SUCCEEDED
    assert re.fullmatch(
        rf"Rebuilt KPI rollups of site {site.code} from 0 movements: .* in [0-9.]+ s\.",
        action.result.splitlines()[-1],
    )
    console = client.get("/oncall/").text
    assert re.findall(r'<td data-label="Status">([^<]*)</td>', console) == ["succeeded"]
    assert f"Rebuilt KPI rollups of site {site.code} from 0 movements" in console
    assert "enqueued as job" not in console


@pytest.mark.parametrize(
    ("url", "asked", "what"),
    [
        ("/oncall/remediations/rebuild-kpis/", "site", "Rebuild KPIs for a site"),
        ("/oncall/remediations/requeue/", None, "Requeue failed jobs"),
    ],
    ids=["rebuild-kpis", "requeue"],
)
@pytest.mark.django_db(transaction=True)
def test_a_remediation_that_cannot_reach_redis_is_recorded_as_failed_with_its_reason(
    client, settings, url, asked, what
):
    # given the queues' Redis refusing connections (nothing listens on its port); a
    # transactional test, so a job is queued at commit as in production (no test transaction)
    refused = f"redis://127.0.0.1:{free_port()}/1"
    settings.RQ_QUEUES = {
        name: {**queue, "URL": refused} for name, queue in settings.RQ_QUEUES.items()
    }
    site = site_make()
    logged_in(client, ON_CALL)

    # when on-call asks for a KPI rebuild of a site, or to requeue every failed job
    form = {"next": "/oncall/", **({asked: site.code} if asked else {})}
    page = client.post(url, form, follow=True)

    # then it is recorded as failed, saying why, and the console tells on-call so
    action = RemediationAction.objects.get()
    assert action.status == RemediationStatus.FAILED
    assert action.target == (site.code if asked else "all failed jobs")
    assert action.result.startswith("Redis unreachable: Error 111 connecting to")
    assert action.finished_at is not None
    assert page.status_code == 200
    assert f"{what}: failed. Redis unreachable: Error 111" in page.text


def test_rebuilding_kpis_for_an_unknown_site_says_so(client, redis_clean):
    logged_in(client, ON_CALL)

    response = client.post("/oncall/remediations/rebuild-kpis/", {"site": "atlantis"}, follow=True)

    assert "unknown site &#x27;atlantis&#x27;" in response.text
    assert not RemediationAction.objects.exists()


def failed_jobs_alert():
    AlertRule.objects.create(name="Failed jobs", kind=AlertKind.FAILED_JOBS, threshold=Decimal(0))
    alerts_evaluate(site_codes=None)
    return Alert.objects.get()


def test_on_call_acknowledges_and_resolves_from_the_console(client, redis_clean):
    failed_job()
    alert = failed_jobs_alert()
    engineer = logged_in(client, ON_CALL)

    client.post(f"/oncall/alerts/{alert.pk}/acknowledge/", {"note": "on it", "next": "/oncall/"})
    client.post("/oncall/remediations/requeue/")  # the cause goes: no failed job left
    client.post(f"/oncall/alerts/{alert.pk}/resolve/", {"note": "requeued"})

    alert.refresh_from_db()
    assert alert.status == AlertStatus.RESOLVED
    page = client.get(f"/oncall/alerts/{alert.pk}/")
    assert [(t.to_status, t.by, t.note) for t in page.context["transitions"]][1:] == [
        ("acknowledged", engineer, "on it"),
        ("resolved", engineer, "requeued"),
    ]


def test_resolving_from_the_console_while_it_still_breaches_says_why_and_offers_a_silence(
    client, redis_clean
):
    failed_job()
    alert = failed_jobs_alert()
    logged_in(client, ON_CALL)

    response = client.post(
        f"/oncall/alerts/{alert.pk}/resolve/", {"note": "looked at it", "next": "/oncall/"}
    )

    # then the alert's page answers 409: why, at the resolve form, with the silence form there
    assert response.status_code == 409
    assert response.context["resolve_error"].startswith(
        "not resolved: the condition still holds (value 1 (breaches above 0))"
    )
    assert "silence this rule" in response.text
    assert 'href="#alert-silence"' in response.text
    assert 'class="silence-form"' in response.text
    assert 'value="looked at it"' in response.text  # the note typed is kept
    assert Alert.objects.get().status == AlertStatus.OPEN
    assert Alert.objects.get().transitions.count() == 1


@pytest.mark.parametrize("role", [MANAGERS, STOCK_STAFF, None])
def test_alert_transitions_are_refused_to_everyone_but_on_call(client, redis_clean, role):
    failed_job()
    alert = failed_jobs_alert()
    logged_in(client, role)

    response = client.post(f"/oncall/alerts/{alert.pk}/resolve/", {"note": "x"})

    assert response.status_code == 403
    assert Alert.objects.get().status == AlertStatus.OPEN


def test_a_failed_jobs_alert_opens_from_real_rq_state_and_resolves_after_requeue(
    client, redis_clean
):
    failed_job()
    alert = failed_jobs_alert()
    assert alert.value == 1
    logged_in(client, ON_CALL)

    client.post("/oncall/remediations/requeue/")
    alerts_evaluate(site_codes=None)

    assert Alert.objects.get().status == AlertStatus.RESOLVED


def test_a_sku_name_with_script_is_inert_on_the_console(client, redis_clean):
    negative_level(sku_name="<script>alert('sku')</script>")
    logged_in(client, ON_CALL)

    page = client.get("/oncall/")

    assert "<script>alert('sku')" not in page.text
    assert "&lt;script&gt;alert(" in page.text


def dead_letter_for_unknown_sku(site_code="north", sku_code="LATE", event_id="wms-1"):
    source, _ = source_make("wms")
    batch_apply(source, [received(sku_code, 4, event_id=event_id, site=site_code)])
    return source, DeadLetter.objects.get(event_id=event_id)


def test_the_console_groups_dead_letters_by_reason_and_on_call_replays_them(client, redis_clean):
    site = site_make("north")
    source, letter = dead_letter_for_unknown_sku()
    engineer = logged_in(client, ON_CALL)

    page = client.get("/oncall/")

    [group] = next(d for d in page.context["diagnostics"] if d.name == "dead_letters").rows
    assert (group["reason_code"], group["source__name"], group["count"]) == (
        "unknown_sku",
        "wms",
        1,
    )
    assert 'data-dead-letters="unknown_sku"' in page.text
    assert "wms-1" in page.text

    sku = sku_make("LATE")  # the cause is fixed
    client.post("/oncall/remediations/replay/", {"reason_code": "unknown_sku", "source": source.pk})

    letter.refresh_from_db()
    assert letter.status == DeadLetterStatus.REPLAYED
    assert StockLevel.objects.get(site=site, sku=sku).on_hand == 4
    action = RemediationAction.objects.get()
    assert (action.actor, action.kind, action.status) == (
        engineer,
        "replay_dead_letters",
        RemediationStatus.SUCCEEDED,
    )
    assert action.result.startswith("replayed 1 dead letter(s): 1 applied")


def test_a_replay_that_is_still_rejected_is_recorded_as_failed(client, redis_clean):
    site_make("north")
    dead_letter_for_unknown_sku()
    logged_in(client, ON_CALL)

    client.post("/oncall/remediations/replay/", {"reason_code": "unknown_sku"})

    action = RemediationAction.objects.get()
    assert action.status == RemediationStatus.FAILED
    assert "1 still rejected" in action.result
    assert DeadLetter.objects.get().status == DeadLetterStatus.OPEN


def test_a_dead_letters_rule_opens_an_alert(redis_clean):
    site_make("north")
    dead_letter_for_unknown_sku()
    AlertRule.objects.create(name="DLQ", kind=AlertKind.DEAD_LETTERS, threshold=Decimal(0))

    alerts_evaluate(site_codes=None)

    assert Alert.objects.get().value == 1


def test_a_dead_letter_with_script_is_inert_on_the_console(client, redis_clean):
    site_make("north")
    dead_letter_for_unknown_sku(sku_code="<script>alert(1)</script>", event_id="<b>x</b>")
    logged_in(client, ON_CALL)

    page = client.get("/oncall/")

    assert "<script>alert(1)" not in page.text
    assert "<b>x</b>" not in page.text
    assert "&lt;b&gt;x&lt;/b&gt;" in page.text


@pytest.mark.parametrize(("role", "status"), [(ON_CALL, 200), (MANAGERS, 403), (STOCK_STAFF, 403)])
def test_django_rq_pages_are_for_on_call_only(client, redis_clean, role, status):
    failed_job()
    logged_in(client, role)

    assert client.get("/admin/rq/").status_code == status
    assert client.get("/admin/rq/queues/0/failed/").status_code == status
    assert client.get("/admin/rq/stats.json").status_code == status


@pytest.mark.parametrize("role", [ON_CALL, MANAGERS, STOCK_STAFF])
def test_django_rq_own_admin_copy_of_the_queue_pages_is_not_mounted(client, redis_clean, role):
    # given a failed job, which django-rq's admin copy would let any staff user delete
    job = failed_job()
    logged_in(client, role)

    # when anyone asks for django-rq's pages inside the admin
    pages = [
        "/admin/django_rq/dashboard/",
        "/admin/django_rq/dashboard/queues/0/failed/",
        "/admin/django_rq/dashboard/stats.json",
    ]
    deleting = client.post(f"/admin/django_rq/dashboard/queues/0/{job.id}/delete/", {"post": "yes"})

    # then they are not there, and the job is still failed (on-call use /admin/rq/)
    assert [client.get(page).status_code for page in pages] == [404, 404, 404]
    assert deleting.status_code == 404
    assert job.id in FailedJobRegistry(queue=django_rq.get_queue("ingest")).get_job_ids()
