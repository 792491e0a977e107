"""An alert's page as on-call reads it at 3 a.m.: numbers and times for people, what the alert is
about (the silent feed, named), its runbook, and an acknowledgement that needs a note."""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from core.roles import ON_CALL
from ingest.models import FeedSource
from oncall.models import Alert, AlertKind, AlertRule, AlertStatus, Runbook
from oncall.services import alerts_evaluate, runbook_save
from tests.builders import user_make
from tests.ingest.helpers import source_make

pytestmark = pytest.mark.django_db


@pytest.fixture
def client():
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user_make(role=ON_CALL, is_staff=True))
    return client


@pytest.fixture
def silent_feed_alert():
    """The courier app silent for 901.16 s against a 900 s rule; the WMS fresh."""
    courier, _ = source_make("courier-app")
    wms, _ = source_make("<b>wms</b>")
    now = timezone.now()
    FeedSource.objects.filter(pk=courier.pk).update(
        newest_applied_occurred_at=now - timedelta(seconds=901.16)
    )
    FeedSource.objects.filter(pk=wms.pk).update(newest_applied_occurred_at=now)
    AlertRule.objects.create(
        name="A feed silent for 15 minutes", kind=AlertKind.FEED_SILENT, threshold=Decimal(900)
    )
    runbook_save(
        runbook=Runbook(
            slug="feed-lag",
            title="Feed lag",
            owner="ops",
            last_reviewed=now.date(),
            alert_kinds=["feed_silent"],
            body="Call the courier.",
        ),
        edited_by=None,
    )
    alerts_evaluate(site_codes=None)
    return Alert.objects.get()


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_the_alert_page_names_the_silent_feed_reads_like_a_person_and_links_its_runbook(
    client, silent_feed_alert
):
    html = client.get(f"/oncall/alerts/{silent_feed_alert.pk}/").content.decode()

    text = text_of(html)
    assert "Silent feeds courier-app : last event 15.0 min ago" in text
    assert "wms" not in text  # the fresh feed is not what the alert is about
    assert "Threshold 15.0 min (breached above it)" in text
    assert "901.1638" not in text and "E+" not in text
    assert re.search(
        r'<time datetime="[^"]+\+00:00" data-local>\d+ \w{3} \d{4}, [\d:]+ UTC</time>', html
    )
    assert 'href="/oncall/runbooks/feed-lag/" data-runbook-link>Feed lag</a>' in html


def test_the_console_shows_values_and_times_for_people(client, silent_feed_alert):
    html = client.get("/oncall/").content.decode()

    measure = re.search(r"data-alert-measure>([^<]+)<", html).group(1)
    assert measure == "15.0 min / 15.0 min"
    opened = re.search(r'data-label="Opened">(.*?)</td>', html, re.S).group(1)
    # not raw ISO: a date for people (the page's script then shows it in the reader's zone)
    assert re.fullmatch(
        r'<time datetime="\S+" data-local>\d+ \w{3} \d{4}, [\d:]{8} UTC</time>', opened
    )


def test_acknowledging_without_a_note_is_refused_at_the_note_field_and_loses_nothing(
    client, silent_feed_alert
):
    url = f"/oncall/alerts/{silent_feed_alert.pk}/acknowledge/"

    response = client.post(url, {"note": "   ", "next": "/oncall/"})

    html = response.content.decode()
    assert response.status_code == 400
    assert 'id="ack-note" name="note" value="   " required aria-invalid="true"' in html
    assert re.search(
        r'id="ack-note-error" class="field-error" role="alert">A note is required', html
    )
    assert 'name="next" value="/oncall/"' in html  # back to the console once it is right
    silent_feed_alert.refresh_from_db()
    assert silent_feed_alert.status == AlertStatus.OPEN

    client.post(url, {"note": "calling the courier's on-call", "next": "/oncall/"})
    silent_feed_alert.refresh_from_db()
    assert silent_feed_alert.status == AlertStatus.ACKNOWLEDGED


def test_the_alert_page_offers_to_silence_its_rule_for_a_time_with_a_reason(
    client, silent_feed_alert
):
    html = client.get(f"/oncall/alerts/{silent_feed_alert.pk}/").content.decode()

    section = html[html.index('<section id="alert-silence">') :]
    form = section[: section.index("</form>")]
    assert f'<input type="hidden" name="rule" value="{silent_feed_alert.rule_id}">' in form
    assert '<select name="minutes"' in form  # how long, chosen from the durations offered
    assert 'name="reason"' in form
