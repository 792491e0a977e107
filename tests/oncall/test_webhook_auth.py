"""Webhook authentication: deliveries signed with the channel's secret (checked with the recipe
docs/oncall.md gives integrators, run as written), an Authorization header, and secrets that
the admin never shows back."""

import re
import time
from pathlib import Path

import pytest

from core.roles import MANAGERS, ON_CALL
from oncall.models import NotificationChannel
from tests.builders import user_make
from tests.oncall.receiver import Receiver
from tests.oncall.test_notifications import channel_form as notifications_channel_form
from tests.oncall.test_notifications import floor, run_jobs  # noqa: F401 (fixture)

pytestmark = pytest.mark.django_db

DOCS = Path(__file__).resolve().parents[2] / "docs" / "oncall.md"
SECRET = "whsec-8c1f-correct-horse"


def documented_verifier():
    """The verification recipe of docs/oncall.md, executed as an integrator would paste it."""
    section = DOCS.read_text().split("### Webhook authentication", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    namespace: dict = {}
    exec(compile(code, "docs/oncall.md", "exec"), namespace)  # noqa: S102 (our own docs)
    return namespace["inventory_ops_verified"]


def test_a_signed_channel_s_deliveries_verify_with_the_documented_recipe(floor):  # noqa: F811
    verified = documented_verifier()
    with Receiver() as receiver:
        NotificationChannel.objects.create(
            name="signed",
            kind="webhook",
            url=receiver.url,
            signing_secret=SECRET,
            authorization="Bearer tok-123",
        )
        alert = floor.breach()
        run_jobs()
        floor.acknowledge(alert)
        run_jobs()
        receiver.wait_for(2)
    firing, acknowledged = receiver.received

    for request in (firing, acknowledged):
        assert verified(SECRET, request.http_headers, request.raw)
        assert request.http_headers["Authorization"] == "Bearer tok-123"
        sent_at = int(request.http_headers["X-Inventory-Ops-Timestamp"])
        assert abs(time.time() - sent_at) < 60
    # and the recipe refuses what it should: another secret, a changed body, an old request
    assert not verified("another-secret", firing.http_headers, firing.raw)
    assert not verified(SECRET, firing.http_headers, firing.raw.replace(b"firing", b"resolved"))
    assert not verified(SECRET, firing.http_headers, firing.raw, now=time.time() + 301)
    assert not verified(SECRET, {}, firing.raw)


def test_a_channel_without_secret_or_token_sends_neither_header(floor):  # noqa: F811
    with Receiver() as receiver:
        NotificationChannel.objects.create(name="plain", kind="slack", url=receiver.url)
        floor.breach()
        run_jobs()
        receiver.wait_for(1)
    headers = receiver.received[0].http_headers
    assert headers["X-Inventory-Ops-Signature"] is None
    assert headers["Authorization"] is None


def test_a_test_send_is_signed_too(client):
    client.force_login(user_make("dana", role=ON_CALL, is_staff=True))
    with Receiver() as receiver:
        channel = NotificationChannel.objects.create(
            name="signed", kind="webhook", url=receiver.url, signing_secret=SECRET
        )
        client.post(f"/admin/oncall/notificationchannel/{channel.pk}/test-send/")
        receiver.wait_for(1)
    request = receiver.received[0]
    assert documented_verifier()(SECRET, request.http_headers, request.raw)


def channel_form(**fields):
    return notifications_channel_form(
        **{"name": "pager", "url": "https://hooks.example.com/oncall", **fields}
    )


def test_secrets_are_saved_but_never_shown_back_and_empty_keeps_them(client):
    client.force_login(user_make("dana", role=ON_CALL, is_staff=True))

    # when on-call saves a channel with a secret and a token
    client.post(
        "/admin/oncall/notificationchannel/add/",
        channel_form(signing_secret=SECRET, authorization="Bearer tok-123"),
    )
    channel = NotificationChannel.objects.get()
    page = client.get(f"/admin/oncall/notificationchannel/{channel.pk}/change/")

    # then they are stored, the page never contains them, and says they are set
    assert (channel.signing_secret, channel.authorization) == (SECRET, "Bearer tok-123")
    assert SECRET not in page.text and "tok-123" not in page.text
    assert "signed (HMAC-SHA256, secret set), Authorization header set" in page.text
    assert "A signing secret is set (not shown)" in page.text

    # when the channel is saved again with the fields left empty, both are kept
    client.post(
        f"/admin/oncall/notificationchannel/{channel.pk}/change/", channel_form(name="pager 2")
    )
    channel.refresh_from_db()
    assert (channel.name, channel.signing_secret, channel.authorization) == (
        "pager 2",
        SECRET,
        "Bearer tok-123",
    )

    # when a new secret is typed and the token removed
    client.post(
        f"/admin/oncall/notificationchannel/{channel.pk}/change/",
        channel_form(signing_secret="rotated", clear_authorization="on"),
    )
    channel.refresh_from_db()
    assert (channel.signing_secret, channel.authorization) == ("rotated", "")


def test_a_bad_authorization_header_or_a_secret_on_email_names_the_field(client):
    client.force_login(user_make("dana", role=ON_CALL, is_staff=True))

    two_lines = client.post(
        "/admin/oncall/notificationchannel/add/",
        channel_form(authorization="Bearer a\r\nX-Evil: 1"),
    )
    on_email = client.post(
        "/admin/oncall/notificationchannel/add/",
        channel_form(kind="email", url="", recipients="a@example.com", signing_secret="s"),
    )

    assert two_lines.context["adminform"].form.errors == {
        "authorization": ["The Authorization header must be one line."]
    }
    assert on_email.context["adminform"].form.errors == {
        "signing_secret": ["Only webhooks send a signing secret; email has none."]
    }
    assert not NotificationChannel.objects.exists()


def test_managers_see_whether_a_channel_is_authenticated_never_the_secrets(client):
    channel = NotificationChannel.objects.create(
        name="signed",
        kind="webhook",
        url="https://hooks.example.com/x",
        signing_secret=SECRET,
        authorization="Bearer tok-123",
    )
    client.force_login(user_make("mia", role=MANAGERS, is_staff=True))

    page = client.get(f"/admin/oncall/notificationchannel/{channel.pk}/change/")

    assert page.status_code == 200
    assert SECRET not in page.text and "tok-123" not in page.text
    assert "signed (HMAC-SHA256, secret set), Authorization header set" in page.text
