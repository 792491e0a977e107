"""What on-call sees and clicks on an alert's page, in Chromium against a real Daphne: an
acknowledgement without a note is refused at the field, a silence is set from the page, and
times read in the viewer's own time zone, named."""

import re

import pytest

from oncall.models import Alert, AlertStatus, Silence
from tests.browser.conftest import chromium, in_thread, log_in  # noqa: F401 (fixtures)
from tests.oncall.test_buttons_browser import PASSWORD, open_negative_stock_alert
from tests.processes import daphne_server

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


def alert_state(pk: int) -> tuple[str, int]:
    alert = Alert.objects.get(pk=pk)
    return alert.status, alert.transitions.count()


def silences() -> list[tuple[str, str]]:
    return list(Silence.objects.values_list("reason", "created_by__username"))


def test_on_call_is_told_a_note_is_needed_then_silences_the_alert(chromium):  # noqa: F811
    alert_id = in_thread(open_negative_stock_alert)

    with daphne_server() as daphne:
        # a viewer in Amsterdam, whose browser says so
        context = chromium.new_context(
            viewport={"width": 1366, "height": 900},
            timezone_id="Europe/Amsterdam",
            locale="en-GB",
        )
        page = context.new_page()
        log_in(page, daphne.base_url, username="engineer", password=PASSWORD)
        page.goto(f"{daphne.base_url}/oncall/alerts/{alert_id}/")

        # when they click Acknowledge without writing a note
        page.get_by_role("button", name="Acknowledge").click()

        # then the page says why at the note field, and nothing changed
        error = page.locator("#ack-note-error")
        error.wait_for()
        assert "note is required" in error.inner_text()
        assert page.locator("#ack-note").get_attribute("aria-invalid") == "true"
        assert in_thread(alert_state, alert_id) == (AlertStatus.OPEN, 1)

        # when they silence the rule for two hours, saying why
        page.goto(f"{daphne.base_url}/oncall/alerts/{alert_id}/")
        form = page.locator("form.silence-form")
        form.locator("select[name=minutes]").select_option("120")
        form.locator("input[name=reason]").fill("recount under way at ams")
        form.get_by_role("button", name="Silence").click()

        # then the page says it is silenced, until when in the viewer's time, zone named
        page.wait_for_selector("text=Silenced until")
        until = page.locator(".silenced time")
        until.wait_for()
        page.wait_for_function(
            "() => !document.querySelector('.silenced time').textContent.includes('UTC')"
        )
        assert re.search(r"\b(CET|CEST|GMT\+1|GMT\+2)\b", until.inner_text()), until.inner_text()
        assert "recount under way at ams" in page.locator(".silenced").inner_text()
        context.close()

    assert in_thread(silences) == [("recount under way at ams", "engineer")]
    assert in_thread(alert_state, alert_id) == (AlertStatus.OPEN, 1)
