"""Signed feeds (docs/signing.md): timestamped signatures, refused when stale or replayed; the
legacy body-only form only for sources marked so; rotated tokens keep working for a grace
period. Through the API with the real Redis; the documented recipes against a real Daphne."""

import hashlib
import hmac
import json
import re
import subprocess
import time
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from ingest.models import FeedSource, IngestBatch
from ingest.receiving import ingest_queue
from ingest.sources import feed_source_rotate_token
from tests.builders import site_make, sku_make
from tests.ingest.helpers import json_body, received, signature_header, source_make
from tests.processes import BASE_DIR, daphne_server, free_port

pytestmark = pytest.mark.django_db

URL = "/api/ingest/events"
SIGNING_DOC = BASE_DIR / "docs" / "signing.md"


@pytest.fixture
def catalog():
    site_make("north")
    sku_make("A")


@pytest.fixture
def signed_source(catalog):
    source, token = source_make(require_signature=True)
    yield source, token
    # The remembered signatures of this test's source (Redis outlives the test's transaction).
    connection = ingest_queue().connection
    for key in connection.scan_iter(f"ingest:signature:{source.pk}:*"):
        connection.delete(key)


def post(client, body: bytes, token: str, signature: str | None = None):
    headers = {"Authorization": f"Bearer {token}"}
    if signature:
        headers["X-Signature"] = signature
    return client.post(URL, data=body, content_type="application/json", headers=headers)


def detail(response) -> str:
    return response.json()["detail"]


def body_of(*qtys: int) -> bytes:
    return json_body([received("A", qty) for qty in qtys]).encode()


def test_a_timestamped_signature_is_accepted(client, signed_source):
    source, token = signed_source
    body = body_of(1)

    response = post(client, body, token, signature_header(source.signing_secret, body))

    assert response.status_code == 202
    assert IngestBatch.objects.count() == 1


@pytest.mark.parametrize("skew", [-301, 301])
def test_a_signature_more_than_five_minutes_off_the_clock_is_refused(client, signed_source, skew):
    source, token = signed_source
    body = body_of(1)
    signature = signature_header(source.signing_secret, body, t=int(time.time()) + skew)

    response = post(client, body, token, signature)

    assert response.status_code == 401
    assert "more than 300 s from the server's clock" in detail(response)
    assert IngestBatch.objects.count() == 0


def test_within_the_tolerance_an_older_signature_is_still_accepted(client, signed_source):
    source, token = signed_source
    body = body_of(1)
    signature = signature_header(source.signing_secret, body, t=int(time.time()) - 240)

    assert post(client, body, token, signature).status_code == 202


def test_the_same_signed_request_again_is_refused_as_a_replay(client, signed_source):
    # Given a signed request that was accepted
    source, token = signed_source
    body = body_of(3)
    signature = signature_header(source.signing_secret, body)
    assert post(client, body, token, signature).status_code == 202

    # When someone sends it again, byte for byte, within the tolerance
    replay = post(client, body, token, signature)

    # Then it is refused and nothing more is stored; signed anew it is accepted
    assert replay.status_code == 409
    assert "sign" in detail(replay) and "again" in detail(replay)
    assert IngestBatch.objects.count() == 1
    fresh = signature_header(source.signing_secret, body, t=int(time.time()) + 1)
    assert post(client, body, token, fresh).status_code == 202


def test_a_signed_request_refused_for_another_reason_may_be_sent_again(client, signed_source):
    source, token = signed_source
    body = b'{"events": []}'
    signature = signature_header(source.signing_secret, body)

    first = post(client, body, token, signature)
    second = post(client, body, token, signature)

    assert (first.status_code, second.status_code) == (400, 400)


def test_with_redis_refusing_connections_a_signed_request_is_stored_and_logged(
    client, signed_source, settings, caplog
):
    # Given the Redis that remembers signatures refusing connections
    refused = f"redis://127.0.0.1:{free_port()}/1"
    settings.RQ_QUEUES = {
        name: {**queue, "URL": refused} for name, queue in settings.RQ_QUEUES.items()
    }
    source, token = signed_source
    body = body_of(1)

    # When a signed request comes, then it is stored (the time window still bounds a replay)
    with caplog.at_level("WARNING"):
        response = post(client, body, token, signature_header(source.signing_secret, body))

    assert response.status_code == 202
    assert "signature replay not checked" in caplog.text


def test_a_tampered_body_or_a_wrong_time_does_not_match(client, signed_source):
    source, token = signed_source
    body = body_of(1)
    signature = signature_header(source.signing_secret, body)
    t, digest = re.match(r"t=(\d+),sha256=(\w+)", signature).groups()

    tampered = post(client, body_of(2), token, signature)
    moved = post(client, body, token, f"t={int(t) + 1},sha256={digest}")

    for response in (tampered, moved):
        assert response.status_code == 401
        assert "does not match" in detail(response)
    assert IngestBatch.objects.count() == 0


def test_the_body_only_form_is_accepted_once_and_refused_when_the_source_says_so(
    client, signed_source
):
    # Given a new source (the body-only form of the feed contract is accepted by default)
    source, token = signed_source
    body = body_of(1)
    body_only = (
        "sha256=" + hmac.new(source.signing_secret.encode(), body, hashlib.sha256).hexdigest()
    )

    # When a producer signs the body alone, then sends the same request again
    accepted = post(client, body, token, body_only)
    replayed = post(client, body, token, body_only)
    # ... and after the source is set to accept timestamped signatures only
    FeedSource.objects.filter(pk=source.pk).update(legacy_body_signature=False)
    refused = post(client, body, token, body_only)

    # Then the first is stored, the replay is not, and the body-only form is then refused
    assert accepted.status_code == 202
    assert replayed.status_code == 409
    assert refused.status_code == 401
    assert "without a timestamp is refused" in detail(refused)
    assert IngestBatch.objects.count() == 1


def test_malformed_signature_headers_say_what_is_expected(client, signed_source):
    _, token = signed_source
    body = body_of(1)

    for header in ["md5=abc", "t=soon,sha256=abc", "t=1,sha256=abc,v=2"]:
        response = post(client, body, token, header)
        assert response.status_code == 401, header
        assert "t=" in detail(response), header


# --- Token rotation -------------------------------------------------------------------------


def test_a_rotated_token_keeps_working_during_its_grace_period_and_not_after(client, catalog):
    # Given a source whose token was rotated
    source, old_token = source_make()
    new_token = feed_source_rotate_token(source=source)

    # When the producer still sends the old one, then the new one
    during = post(client, body_of(1), old_token)
    with_new = post(client, body_of(1), new_token)
    # ... and when the grace period (24 h by default) has passed
    assert source.previous_token_valid_until - timezone.now() > timedelta(hours=23, minutes=59)
    FeedSource.objects.filter(pk=source.pk).update(
        previous_token_valid_until=timezone.now() - timedelta(seconds=1)
    )
    after = post(client, body_of(1), old_token)

    # Then the old one worked until then, and not after
    assert during.status_code == 202
    assert with_new.status_code == 202
    assert after.status_code == 401
    assert "unknown or rotated token" in detail(after)
    assert post(client, body_of(1), new_token).status_code == 202


def test_rotating_again_ends_the_older_tokens_grace_at_once(client, catalog):
    source, first = source_make()
    second = feed_source_rotate_token(source=source)
    third = feed_source_rotate_token(source=source)

    assert post(client, body_of(1), first).status_code == 401
    assert post(client, body_of(1), second).status_code == 202
    assert post(client, body_of(1), third).status_code == 202


def test_the_admin_shows_when_each_token_was_last_used_and_can_end_the_grace(client, catalog):
    # Given a rotated source whose old token was used after the rotation
    source, old_token = source_make("wms-east")
    feed_source_rotate_token(source=source)
    assert post(client, body_of(1), old_token).status_code == 202
    admin = get_user_model().objects.create_superuser("root")
    client.force_login(admin)

    # When an admin looks at the feed sources, then ends the old token's grace period
    listing = client.get("/admin/ingest/feedsource/").content.decode()
    ended = client.post(
        "/admin/ingest/feedsource/",
        {"action": "end_token_grace", "_selected_action": [source.pk]},
    )

    # Then the list said the previous token works until a time and was used; now it does not
    assert "works until" in listing
    assert "last used never" not in listing
    source.refresh_from_db()
    assert source.previous_token_last_used_at is not None
    assert source.token_last_used_at is None  # the new token has not been used yet
    assert ended.status_code == 302
    client.logout()
    assert post(client, body_of(1), old_token).status_code == 401


def test_the_token_last_used_time_is_recorded_once_a_minute_not_on_every_request(client, catalog):
    source, token = source_make()
    assert post(client, body_of(1), token).status_code == 202
    source.refresh_from_db()
    first_use = source.token_last_used_at

    assert post(client, body_of(1), token).status_code == 202

    source.refresh_from_db()
    assert first_use is not None
    assert source.token_last_used_at == first_use


# --- The documented recipes, run as written ---------------------------------------------------


def doc_block(language: str, after_heading: str) -> str:
    section = SIGNING_DOC.read_text().split(after_heading, 1)[1]
    return section.split(f"```{language}\n", 1)[1].split("```", 1)[0]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_documented_openssl_and_python_recipes_are_accepted(tmp_path, catalog):
    # Given a source that requires signatures, and a body in a file
    source, token = source_make(require_signature=True)
    body_file = tmp_path / "events.json"
    body_file.write_bytes(body_of(2, 3) + b"\n")
    shell = doc_block("sh", "## Shell: openssl and curl")
    python = doc_block("python", "## Python")
    namespace = {}
    exec(compile(python, "docs/signing.md", "exec"), namespace)  # noqa: S102 (our own doc)

    with daphne_server() as daphne:
        # When the shell recipe runs exactly as printed
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", shell],
            env={
                "PATH": "/usr/bin:/bin",
                "SECRET": source.signing_secret,
                "TOKEN": token,
                "URL": daphne.base_url,
                "BODY_FILE": str(body_file),
            },
            capture_output=True,
            text=True,
            timeout=60,
        )
        # ... and the Python recipe too
        from_python = namespace["signed_post"](
            daphne.base_url, token, source.signing_secret, [received("A", 1)]
        )

    # Then both batches are accepted
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["accepted"] == 2, result.stdout
    assert json.loads(from_python)["accepted"] == 1
    assert IngestBatch.objects.filter(source=source).count() == 2
