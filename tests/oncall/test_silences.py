"""Silences: a silenced alert still shows, sends nothing until the silence ends, then pages."""

from datetime import timedelta

import pytest
from django.utils import timezone

from core.roles import MANAGERS, ON_CALL
from oncall.exceptions import SilenceInvalid
from oncall.models import AlertStatus, NotificationDelivery, Silence
from oncall.silences import silence_create, silence_end, silences_ended_notify
from tests.builders import site_make, user_make
from tests.oncall.receiver import Receiver
from tests.oncall.test_notifications import floor, run_jobs, webhook  # noqa: F401 (fixture)

pytestmark = pytest.mark.django_db


@pytest.fixture
def engineer():
    return user_make("sam", role=ON_CALL, is_staff=True)


def an_hour_from_now():
    return timezone.now() + timedelta(hours=1)


def test_a_silenced_alert_shows_but_sends_nothing(floor, engineer, client):  # noqa: F811
    silence_create(
        user=engineer,
        rule_id=floor.rule.pk,
        ends_at=an_hour_from_now(),
        reason="shelf audit in Amsterdam",
    )
    with Receiver() as receiver:
        webhook(receiver.url)

        # when the rule breaches and the alert acknowledges
        alert = floor.breach()
        floor.acknowledge(alert)
        run_jobs()

    # then nothing reached the receiver, and the log says why
    assert receiver.received == []
    suppressed = NotificationDelivery.objects.order_by("pk")
    assert [(d.event, d.status) for d in suppressed] == [
        ("firing", "suppressed"),
        ("acknowledged", "suppressed"),
    ]
    assert "shelf audit in Amsterdam" in suppressed[0].outcome
    # and the alert still shows, marked silenced
    client.force_login(engineer)
    console = client.get("/oncall/").content.decode()
    assert f'data-alert-id="{alert.pk}"' in console
    assert "silenced until" in console
    page = client.get(f"/oncall/alerts/{alert.pk}/").content.decode()
    assert "Silenced until" in page
    assert "shelf audit in Amsterdam" in page


def test_a_silence_of_another_site_does_not_hold_back_this_one(floor, engineer):  # noqa: F811
    silence_create(
        user=engineer, site_id=site_make("rtm").pk, ends_at=an_hour_from_now(), reason="move"
    )
    with Receiver() as receiver:
        webhook(receiver.url)
        floor.breach()
        run_jobs()
        receiver.wait_for(1)

    assert NotificationDelivery.objects.get().status == "sent"


def test_an_alert_still_open_when_its_silence_ends_is_sent_then(floor, engineer):  # noqa: F811
    silence = silence_create(
        user=engineer,
        site_id=floor.site.pk,
        ends_at=an_hour_from_now(),
        reason="maintenance window",
    )
    with Receiver() as receiver:
        webhook(receiver.url)
        alert = floor.breach()
        run_jobs()
        assert receiver.received == []

        # when the silence ends and the scheduled evaluation runs
        silence_end(silence_id=silence.pk, user=engineer)
        with floor.capture(execute=True):
            assert silences_ended_notify() == 1
        run_jobs()
        (body,) = receiver.wait_for(1)

        # and a second run does not page again
        assert silences_ended_notify() == 0

    assert (body["event"], body["alert"]["id"]) == ("firing", alert.pk)


def test_an_alert_acknowledged_during_the_silence_is_not_paged_after(floor, engineer):  # noqa: F811
    silence = silence_create(
        user=engineer, rule_id=floor.rule.pk, ends_at=an_hour_from_now(), reason="known"
    )
    with Receiver() as receiver:
        webhook(receiver.url)
        alert = floor.breach()
        floor.acknowledge(alert)
        silence_end(silence_id=silence.pk, user=engineer)
        with floor.capture(execute=True):
            assert silences_ended_notify() == 0
        run_jobs()

    assert alert.transitions.last().to_status == AlertStatus.ACKNOWLEDGED
    assert receiver.received == []


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"reason": "  "}, "Say why"),
        ({"rule_id": None, "site_id": None}, "must name a rule, a site or both"),
        ({"ends_at": timezone.now() - timedelta(minutes=1)}, "must be in the future"),
        ({"starts_at": timezone.now() + timedelta(hours=3)}, "must be after the start"),
        ({"ends_at": timezone.now() + timedelta(days=31)}, "at most 30 days"),
    ],
)
def test_a_silence_without_reason_scope_or_sane_end_is_refused(engineer, fields, problem):
    site = site_make("ams")
    arguments = {"site_id": site.pk, "ends_at": an_hour_from_now(), "reason": "audit", **fields}

    with pytest.raises(SilenceInvalid, match=problem):
        silence_create(user=engineer, **arguments)
    assert not Silence.objects.exists()


def test_on_call_silences_from_the_console_and_ends_it(client, engineer, redis_clean):
    site = site_make("ams")
    client.force_login(engineer)

    refused = client.post(
        "/oncall/silences/", {"site": "ams", "minutes": "60", "reason": ""}, follow=True
    )
    created = client.post(
        "/oncall/silences/", {"site": "ams", "minutes": "120", "reason": "stocktake"}, follow=True
    )

    assert "Not silenced: Say why: a silence needs a reason." in refused.content.decode()
    silence = Silence.objects.get()
    assert (silence.site, silence.reason, silence.created_by) == (site, "stocktake", engineer)
    assert timedelta(minutes=119) < silence.ends_at - silence.starts_at <= timedelta(minutes=120)
    page = created.content.decode()
    assert "Silenced site ams until" in page
    assert f'data-silence-id="{silence.pk}"' in page

    ended = client.post(f"/oncall/silences/{silence.pk}/end/", follow=True)

    silence.refresh_from_db()
    assert silence.ends_at <= timezone.now()
    assert silence.ended_by == engineer
    assert "Silence of site ams ended." in ended.content.decode()
    assert f'data-silence-id="{silence.pk}"' not in ended.content.decode()


def test_managers_see_silences_but_cannot_set_them(client, redis_clean):
    site_make("ams")
    client.force_login(user_make(role=MANAGERS, is_staff=True))

    response = client.post("/oncall/silences/", {"site": "ams", "minutes": "60", "reason": "x"})

    assert response.status_code == 403
    assert not Silence.objects.exists()
    assert 'id="silence-create"' not in client.get("/oncall/").content.decode()


def test_on_call_silences_in_the_admin_with_clear_errors_and_ends_by_action(client, engineer):
    site = site_make("ams")
    client.force_login(engineer)
    start = timezone.now()
    form = {
        "rule": "",
        "site": "",
        "starts_at_0": start.strftime("%Y-%m-%d"),
        "starts_at_1": start.strftime("%H:%M:%S"),
        "ends_at_0": (start + timedelta(hours=2)).strftime("%Y-%m-%d"),
        "ends_at_1": (start + timedelta(hours=2)).strftime("%H:%M:%S"),
        "reason": "quarterly count",
    }

    nothing_named = client.post("/admin/oncall/silence/add/", form)
    created = client.post("/admin/oncall/silence/add/", {**form, "site": site.pk})

    assert nothing_named.context["adminform"].form.non_field_errors() == [
        "A silence must name a rule, a site or both."
    ]
    assert created.status_code == 302
    silence = Silence.objects.get()
    assert (silence.site, silence.created_by) == (site, engineer)

    client.post(
        "/admin/oncall/silence/",
        {"action": "end_now", "_selected_action": [silence.pk]},
    )
    silence.refresh_from_db()
    assert silence.ends_at <= timezone.now()
