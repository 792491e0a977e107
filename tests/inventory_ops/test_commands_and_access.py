import dataclasses
import io
import json
import re
import socket
import subprocess
import sys

import django_rq
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command

from core.roles import ON_CALL, STOCK_STAFF
from ingest.heartbeats import heartbeat_make, heartbeat_redis_write
from ingest.models import FeedSource
from ingest.sources import token_hash
from ledger.models import Movement, Site, Sku, StockLevel
from tests.builders import user_make
from tests.processes import BASE_DIR, subprocess_env

pytestmark = pytest.mark.django_db


def run(*args, **options) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, **options)
    return out.getvalue()


def test_create_feed_source_prints_the_token_alone_on_the_last_line_and_stores_only_its_hash():
    output = run("create_feed_source", "courier-app")

    token = output.strip().splitlines()[-1]
    assert token.startswith("iof_") and " " not in token and len(token) > 40
    source = FeedSource.objects.get(name="courier-app")
    assert source.token_hash == token_hash(token)
    assert token not in {source.token_hash, source.token_prefix, source.signing_secret}


def test_create_feed_source_refuses_a_duplicate_name_and_rotates_on_request():
    first = run("create_feed_source", "wms").strip().splitlines()[-1]

    with pytest.raises(CommandError, match="already exists; use --rotate"):
        run("create_feed_source", "wms")
    second = run("create_feed_source", "wms", "--rotate").strip().splitlines()[-1]

    source = FeedSource.objects.get(name="wms")
    assert second != first
    assert source.token_hash == token_hash(second)


def test_create_feed_source_with_signature_prints_the_secret_once():
    output = run("create_feed_source", "3pl", "--require-signature")

    source = FeedSource.objects.get(name="3pl")
    assert source.require_signature
    assert source.signing_secret in output
    assert output.strip().splitlines()[-1] != source.signing_secret


def test_roles_exist_with_their_permissions():
    def codenames(role):
        return set(Group.objects.get(name=role).permissions.values_list("codename", flat=True))

    assert {"approve_correction", "view_dashboard"} <= codenames("managers")
    assert "approve_correction" not in codenames("stock-staff")
    assert {"correct_stock", "import_counts"} <= codenames("stock-staff")
    assert "run_remediation" in codenames("on-call")
    assert "run_remediation" not in codenames("managers")


def test_load_demo_refuses_well_known_passwords_in_production_without_force(settings):
    settings.DEBUG = False

    with pytest.raises(CommandError, match="needs --force"):
        run("load_demo")

    assert not get_user_model().objects.exists()


def test_load_demo_is_idempotent_and_prints_a_user_per_role(settings):
    settings.DEBUG = True
    first = run("load_demo")
    counts = (Site.objects.count(), Sku.objects.count(), Movement.objects.count())
    second = run("load_demo")

    assert (Site.objects.count(), Sku.objects.count(), Movement.objects.count()) == counts
    assert counts[0] >= 3 and counts[1] >= 20
    assert StockLevel.objects.filter(on_hand__gt=0).count() == counts[0] * counts[1]
    for role, username in (
        ("managers", "manager"),
        ("stock-staff", "staff"),
        ("on-call", "oncall"),
    ):
        assert get_user_model().objects.get(username=username).groups.filter(name=role).exists()
        assert f"username: {username}" in first
        assert f"username: {username}" in second
    call_command("check_ledger", stdout=io.StringIO())


def test_every_page_requires_login(client):
    for path in ("/", "/admin/", "/admin/inventory_ops/stocklevel/", "/admin/rq/"):
        response = client.get(path)
        assert response.status_code == 302, path
        assert "/login/" in response["Location"]


def test_login_page_logs_a_user_in_and_logout_logs_out(client):
    user_make("dora", password="correct horse", role="stock-staff")

    page = client.get("/accounts/login/")
    assert page.status_code == 200
    assert b'name="username"' in page.content

    refused = client.post("/accounts/login/", {"username": "dora", "password": "wrong"})
    assert refused.status_code == 200
    assert b"Please enter a correct username and password" in refused.content

    response = client.post("/accounts/login/", {"username": "dora", "password": "correct horse"})
    assert response.status_code == 302
    assert client.get("/").status_code == 200

    client.post("/accounts/logout/")
    assert client.get("/").status_code == 302


def test_healthz_answers_without_login(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_the_icon_is_served_to_every_page_without_login(client):
    # the app's pages link it; the admin's do not, so browsers ask for /favicon.ico
    page = client.get("/accounts/login/").content.decode()
    redirect = client.get("/favicon.ico")

    assert redirect.status_code == 302  # not cached for good: the hashed name changes
    assert f'href="{redirect["Location"]}"' in page
    icon = client.get(redirect["Location"])
    assert icon.status_code == 200
    assert icon["Content-Type"] == "image/svg+xml"


def test_readyz_tells_anyone_only_whether_the_web_process_is_ready(client):
    # no worker runs in this test: workers are not the web process's readiness
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


def test_readyz_tells_on_call_each_dependency_the_workers_and_the_queues(client):
    client.force_login(user_make("pager", role=ON_CALL))

    body = client.get("/readyz").json()

    assert (body["status"], body["database"], body["redis"]) == ("ready", "ok", "ok")
    assert isinstance(body["workers"], list)
    assert set(body["queue_depth"]) == {"ingest", "default"}


def test_readyz_tells_on_call_each_live_worker_and_how_long_ago_it_beat(client, redis_clean):
    # given a worker whose last heartbeat in Redis is 2.25 s old
    beat = heartbeat_make(name="worker-a", queues=["ingest", "default"])
    beat = dataclasses.replace(beat, beat_at=beat.beat_at - 2.25)
    heartbeat_redis_write(beat, django_rq.get_connection("default"))
    client.force_login(user_make("pager", role=ON_CALL))

    response = client.get("/readyz")

    [worker] = response.json()["workers"]
    assert (worker["name"], worker["queues"]) == ("worker-a", ["ingest", "default"])
    # to a tenth of a second
    [seconds_ago] = re.findall(r'"seconds_ago": ([0-9.]+)', response.text)
    assert re.fullmatch(r"[0-9]+\.[0-9]", seconds_ago)
    assert 2.2 <= float(seconds_ago) < 60


def test_readyz_shows_no_server_address_to_anyone_when_redis_is_down(client, settings):
    # given a Redis that refuses connections
    from tests.processes import free_port

    dead = f"redis://127.0.0.1:{free_port()}/0"
    settings.RQ_QUEUES = {name: {**cfg, "URL": dead} for name, cfg in settings.RQ_QUEUES.items()}

    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json() == {"status": "not ready"}


def test_readyz_tells_other_logged_in_users_only_whether(client):
    client.force_login(user_make("clerk", role=STOCK_STAFF))

    assert client.get("/readyz").json() == {"status": "ready"}


READYZ_SCRIPT = """
import json, time
from django.test import RequestFactory
from inventory_ops.views import readyz
request = RequestFactory().get("/readyz")
request.user = type("OnCall", (), {"is_authenticated": True, "has_perm": lambda self, p: True})()
started = time.monotonic()
response = readyz(request)
seconds = time.monotonic() - started
print(json.dumps({"status": response.status_code, "body": json.loads(response.content),
                  "seconds": seconds}))
"""


def readyz_in_a_process(**env: str) -> dict:
    """What /readyz answers an on-call user in a fresh web process with `env` (a dependency's
    address): its status, body and seconds taken."""
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", READYZ_SCRIPT],
        cwd=BASE_DIR,
        env=subprocess_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_readyz_answers_503_in_seconds_when_redis_accepts_connections_but_never_answers():
    # given a "Redis" that completes the TCP handshake (the kernel's backlog) and never replies
    with socket.socket() as hung_redis:
        hung_redis.bind(("127.0.0.1", 0))
        hung_redis.listen(64)
        port = hung_redis.getsockname()[1]
        # when the web process checks readiness
        answer = readyz_in_a_process(REDIS_URL=f"redis://127.0.0.1:{port}/0")

    # then it says Redis is the problem within seconds instead of hanging
    assert answer["status"] == 503
    assert answer["body"]["database"] == "ok"
    assert answer["body"]["redis"].startswith("unreachable: Timeout")
    # (redis-py's own default read timeout is 5 s; ours is INGEST_REDIS_TIMEOUT_SECONDS, 2 s)
    assert answer["seconds"] < 4.5


@pytest.mark.slow
def test_readyz_is_not_ready_in_seconds_and_tells_nothing_more_when_the_database_is_down():
    # given a web process whose PostgreSQL refuses connections (nothing listens at its address)
    from tests.processes import free_port

    dead_database = f"postgres://postgres@127.0.0.1:{free_port()}/inventory_ops"

    # when an on-call user asks whether it is ready
    answer = readyz_in_a_process(DATABASE_URL=dead_database)

    # then it is not ready, at once, and says no more: nobody can be recognised without the
    # database, and the error would name a server address
    assert answer["status"] == 503
    assert answer["body"] == {"status": "not ready"}
    assert answer["seconds"] < 4.5


def test_create_feed_source_accepts_body_only_signatures_unless_told_timestamped_only():
    run("create_feed_source", "courier", "--require-signature")
    run("create_feed_source", "wms-strict", "--require-signature", "--timestamped-signatures-only")

    assert FeedSource.objects.get(name="courier").legacy_body_signature
    assert not FeedSource.objects.get(name="wms-strict").legacy_body_signature
