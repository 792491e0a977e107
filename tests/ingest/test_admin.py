"""The ingest admin: tokens shown once, conservation counts, dead letters replayed/discarded."""

import re
from html.parser import HTMLParser

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.messages import get_messages

from core.roles import MANAGERS, ON_CALL
from ingest.exceptions import FeedSourceNotAllowed
from ingest.models import DeadLetter, DeadLetterStatus, FeedSource
from ingest.sources import feed_source_by_token, feed_source_create, feed_source_rotate_token
from tests.builders import site_make, sku_make, user_make
from tests.ingest.helpers import batch_apply, json_body, received, source_make

pytestmark = pytest.mark.django_db


@pytest.fixture
def on_call(client):
    user = user_make(role=ON_CALL, is_staff=True)
    client.force_login(user)
    return user


@pytest.fixture
def admin_client_logged(client):
    user = user_make(is_staff=True, is_superuser=True)
    client.force_login(user)
    return client


def shown_token(response) -> str:
    text = " ".join(str(message) for message in get_messages(response.wsgi_request))
    return re.search(r"<code>(iof_[^<]+)</code>", text).group(1)


def test_creating_a_source_shows_a_working_token_once(admin_client_logged):
    response = admin_client_logged.post(
        "/admin/ingest/feedsource/add/",
        {"name": "courier-x", "rate_limit_per_minute": 120, "is_active": "on"},
    )
    assert response.status_code == 302
    token = shown_token(response)
    source = FeedSource.objects.get(name="courier-x")
    assert feed_source_by_token(token=token) == source
    assert source.rate_limit_per_minute == 120
    change_url = f"/admin/ingest/feedsource/{source.pk}/change/"
    assert token in admin_client_logged.get(change_url).content.decode()  # the message, once
    assert token not in admin_client_logged.get(change_url).content.decode()


class _FormFields(HTMLParser):
    """What a browser would send from the form with this id: its fields as rendered (a
    checkbox only when checked), before the person changes anything."""

    def __init__(self, form_id: str):
        super().__init__()
        self.form_id, self.inside, self.fields = form_id, False, {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.inside = attrs.get("id") == self.form_id
        if not self.inside or tag != "input" or not attrs.get("name"):
            return
        if attrs.get("type") == "checkbox":
            if "checked" in attrs:
                self.fields[attrs["name"]] = attrs.get("value", "on")
        elif attrs.get("type") != "submit":
            self.fields[attrs["name"]] = attrs.get("value", "")

    def handle_endtag(self, tag):
        if tag == "form":
            self.inside = False


def form_fields(page, form_id: str) -> dict[str, str]:
    parser = _FormFields(form_id)
    parser.feed(page.text)
    return parser.fields


def test_an_admin_edits_a_source_through_its_change_form_and_the_producer_meets_it(
    admin_client_logged,
):
    # given a source in use, opened in the admin
    site_make("north")
    sku_make("A")
    source, token = source_make("courier-y")
    change_url = f"/admin/ingest/feedsource/{source.pk}/change/"
    fields = form_fields(admin_client_logged.get(change_url), "feedsource_form")
    assert (fields["name"], fields["is_active"]) == ("courier-y", "on")

    # when the admin lowers its rate limit, unticks "is active" and presses Save
    fields["rate_limit_per_minute"] = "30"
    del fields["is_active"]
    saved = admin_client_logged.post(change_url, {**fields, "_save": "Save"}, follow=True)

    # then the list says it was changed and shows the new values, and the token is the same
    assert saved.redirect_chain == [("/admin/ingest/feedsource/", 302)]
    assert "was changed successfully" in saved.text
    row = saved.text[saved.text.index("courier-y") :]
    assert '<td class="field-rate_limit_per_minute">30</td>' in row
    history = LogEntry.objects.get(object_id=str(source.pk)).get_change_message()
    assert history == "Changed Rate limit per minute and Is active."
    assert feed_source_by_token(token=token) == source
    # and the producer's next push is refused as disabled, nothing stored
    pushed = admin_client_logged.post(
        "/api/ingest/events",
        data=json_body([received("A", 1)]),
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert pushed.status_code == 403
    assert pushed.json()["detail"] == "feed source 'courier-y' is disabled"


def test_rotating_a_token_from_the_admin(admin_client_logged):
    source, old_token = source_make()
    response = admin_client_logged.post(
        "/admin/ingest/feedsource/",
        {"action": "rotate_tokens", "_selected_action": [source.pk]},
    )
    new_token = shown_token(response)
    assert feed_source_by_token(token=new_token) == source
    # the old token keeps working for the grace period, and the message says until when
    assert feed_source_by_token(token=old_token) == source
    shown = " ".join(str(message) for message in get_messages(response.wsgi_request))
    assert "The old one keeps working until" in shown
    assert LogEntry.objects.get(object_id=str(source.pk)).change_message == "Token rotated."


@pytest.mark.parametrize("role", [MANAGERS, ON_CALL])
def test_view_only_roles_cannot_rotate_a_token(client, role):
    # given a manager or on-call user, who may look at feed sources
    source, token = source_make()
    client.force_login(user_make(role=role, is_staff=True))
    assert client.get("/admin/ingest/feedsource/").status_code == 200

    # when they post the rotate action by hand
    response = client.post(
        "/admin/ingest/feedsource/",
        {"action": "rotate_tokens", "_selected_action": [source.pk]},
    )

    # then nothing is rotated and no token is shown: the producer keeps working
    assert "iof_" not in " ".join(str(m) for m in get_messages(response.wsgi_request))
    assert feed_source_by_token(token=token) == source
    # and the service refuses them too, whatever screen calls it
    with pytest.raises(FeedSourceNotAllowed):
        feed_source_rotate_token(source=source, rotated_by=user_make(role=role, is_staff=True))
    assert feed_source_by_token(token=token) == source
    with pytest.raises(FeedSourceNotAllowed):
        feed_source_create(name="sneaky", created_by=user_make(role=role, is_staff=True))
    assert not FeedSource.objects.filter(name="sneaky").exists()


def test_source_list_shows_conservation_counts(admin_client_logged):
    site_make("north")
    sku_make("A")
    source, _ = source_make("counted-feed")
    batch_apply(source, [received("A", 1, event_id="1"), received("A", 0, event_id="2")])
    batch_apply(source, [received("A", 1, event_id="1")])
    page = admin_client_logged.get("/admin/ingest/feedsource/").content.decode()
    row = page[page.index("counted-feed") :]
    cells = re.findall(r'<td class="field-total_(\w+)">(\d+)</td>', row)[:5]
    assert dict(cells) == {
        "accepted": "3",
        "applied": "1",
        "duplicates": "1",
        "rejected": "1",
        "pending": "0",
    }


def test_on_call_filters_replays_and_discards_dead_letters(client, on_call):
    site_make("north")
    source, _ = source_make()
    batch_apply(source, [received("LATER", 2, event_id="x"), received("NEVER", 1, event_id="y")])
    listing = client.get(
        "/admin/ingest/deadletter/?reason_code__exact=unknown_sku&status__exact=open"
    )
    assert "sku: unknown SKU" in listing.content.decode()
    later = DeadLetter.objects.get(event_id="x")
    never = DeadLetter.objects.get(event_id="y")
    # when the SKU is created and on-call replays
    sku_make("LATER")
    client.post(
        "/admin/ingest/deadletter/",
        {"action": "replay_selected", "_selected_action": [later.pk]},
    )
    later.refresh_from_db()
    assert (later.status, later.replay_outcome, later.handled_by) == (
        "replayed",
        "applied",
        on_call,
    )
    # discarding asks for a note first
    confirm = client.post(
        "/admin/ingest/deadletter/",
        {"action": "discard_selected", "_selected_action": [never.pk]},
    )
    assert "note" in confirm.content.decode()
    never.refresh_from_db()
    assert never.status == DeadLetterStatus.OPEN
    client.post(
        "/admin/ingest/deadletter/",
        {
            "action": "discard_selected",
            "_selected_action": [never.pk],
            "confirm": "1",
            "note": "SKU retired",
        },
    )
    never.refresh_from_db()
    assert (never.status, never.discard_note) == ("discarded", "SKU retired")
    # and both are in the admin's history, with who did it
    history = LogEntry.objects.filter(user=on_call).order_by("pk")
    assert [(entry.object_id, entry.change_message) for entry in history] == [
        (str(later.pk), "Replayed: replayed."),
        (str(never.pk), "Discarded. Note: SKU retired"),
    ]


def test_managers_see_dead_letters_but_cannot_replay(client):
    client.force_login(user_make(role=MANAGERS, is_staff=True))
    page = client.get("/admin/ingest/deadletter/")
    assert page.status_code == 200
    assert "replay_selected" not in page.content.decode()


def test_admin_pages_render(admin_client_logged):
    site_make("north")
    source, _ = source_make()
    batch = batch_apply(source, [received("NOPE", 1)])
    letter = DeadLetter.objects.get()
    for url in [
        "/admin/ingest/feedsource/add/",
        f"/admin/ingest/feedsource/{source.pk}/change/",
        "/admin/ingest/ingestbatch/",
        f"/admin/ingest/ingestbatch/{batch.pk}/change/",
        "/admin/ingest/heldevent/",
        f"/admin/ingest/deadletter/{letter.pk}/change/",
    ]:
        assert admin_client_logged.get(url).status_code == 200, url
