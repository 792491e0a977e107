"""What a person or a program gets when the database or Redis is away: a 503, never a 500.

The real outages (PostgreSQL stopped, Redis killed, under Daphne) are in tests/faults/; here the
choice of answer, with views that meet the errors such an outage raises."""

from contextlib import ExitStack

import pytest
from django.contrib.auth.signals import user_logged_in
from django.db import OperationalError

from tests.builders import user_make
from tests.db_locks import table_locked

pytestmark = [pytest.mark.django_db]
OUTAGE_URLS = pytest.mark.urls("tests.inventory_ops.outage_urls")


@pytest.fixture
def client_logged_in(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("viewer"))
    return client


@OUTAGE_URLS
@pytest.mark.parametrize("path", ["/page/database", "/page/redis"])
def test_a_page_meeting_an_outage_answers_the_plain_503_page(client_logged_in, path):
    response = client_logged_in.get(path)

    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    page = response.content.decode()
    assert "Server unavailable, retrying" in page
    assert "5432" not in page and "6379" not in page  # no server address to anyone
    assert '<meta http-equiv="refresh" content="5">' in page  # a TV on the floor retries


@OUTAGE_URLS
def test_the_api_meeting_an_outage_answers_json_saying_to_retry(client_logged_in):
    response = client_logged_in.get("/api/database")

    assert response.status_code == 503
    assert response.json()["detail"].endswith("retry in 5 s")
    assert "5432" not in response.content.decode()


@OUTAGE_URLS
def test_a_client_asking_for_json_gets_json(client_logged_in):
    response = client_logged_in.get("/page/database", headers={"Accept": "application/json"})

    assert response.status_code == 503
    assert "retry" in response.json()["detail"]


@OUTAGE_URLS
def test_a_bug_is_still_a_500(client_logged_in):
    client_logged_in.raise_request_exception = False

    response = client_logged_in.get("/page/bug")

    assert response.status_code == 500
    assert "Something went wrong on our side" in response.content.decode()  # our 500 page


def test_the_json_api_answers_503_in_json_when_the_database_is_away(
    client, monkeypatch, django_user_model
):
    # given a KPI read that meets a database outage
    def database_away(*args, **kwargs):
        raise OperationalError("couldn't get a connection after 5.00 sec")

    monkeypatch.setattr("dashboards.api.kpis_compute", database_away)
    client.force_login(django_user_model.objects.create_user("reader"))

    response = client.get("/api/kpis")

    assert response.status_code == 503
    assert "retry" in response.json()["detail"]


@pytest.mark.django_db(transaction=True)
def test_a_page_that_fails_while_the_database_is_away_gets_the_503_page_not_the_500_page(
    client, postgres_only, caplog
):
    # given a logged-in person, and the sessions table that stops answering: their link leads
    # nowhere, and the "not found" page reads who they are from the session, outside every
    # view, so only the 500 handler is left to answer the outage
    client.force_login(user_make("clerk"))
    client.raise_request_exception = False
    with table_locked("django_session"):
        # when they follow a stale link
        response = client.get("/no-such-page/")

    # then they get the page that retries by itself, not the server error page
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    page = response.content.decode()
    assert "Server unavailable, retrying" in page
    assert "Something went wrong on our side" not in page
    # and the log tells on-call which outage it was
    assert "503 for /no-such-page/: OperationalError: canceling statement due to lock timeout" in (
        caplog.text
    )
    # and once the database answers again, the same link is an ordinary "not found"
    assert client.get("/no-such-page/").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_a_login_whose_session_cannot_be_saved_gets_the_503_page_not_a_400(client, postgres_only):
    # given a person about to log in, and the database that stops taking writes to the sessions
    # table just after the login view has run: the session is then saved by the session
    # middleware, which reports the failed write as an interrupted session (a 400)
    user_make("clerk", password="pw-for-tests")
    locks = ExitStack()

    def database_stops_answering(**kwargs):
        locks.enter_context(table_locked("django_session", mode="EXCLUSIVE"))

    user_logged_in.connect(database_stops_answering, dispatch_uid="outage-after-login")
    try:
        # when they log in
        response = client.post(
            "/accounts/login/", {"username": "clerk", "password": "pw-for-tests"}
        )
    finally:
        user_logged_in.disconnect(dispatch_uid="outage-after-login")
        locks.close()

    # then they get the page that retries by itself, not "Bad Request"
    assert response.status_code == 503
    assert "Server unavailable, retrying" in response.content.decode()
    # and once the database answers again, the same login works
    retried = client.post("/accounts/login/", {"username": "clerk", "password": "pw-for-tests"})
    assert (retried.status_code, retried["Location"]) == (302, "/")


def test_a_bad_request_without_an_outage_is_still_a_400(client):
    response = client.get("/accounts/login/", headers={"Host": "bad host"})

    assert response.status_code == 400
