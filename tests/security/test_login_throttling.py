"""Login throttling (django-axes): repeated wrong passwords for a username from one address lock
that pair out; the lockout is logged, shown as a page, and lifted by an admin or by time."""

import logging
import re
import urllib.error
import urllib.parse
import urllib.request
from datetime import timedelta

import pytest
from axes.models import AccessAttempt, AccessFailureLog
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client

from tests.processes import daphne_server

pytestmark = pytest.mark.django_db

PASSWORD = "right-password-for-tests"


@pytest.fixture
def clerk():
    return get_user_model().objects.create_user("clerk", password=PASSWORD)


def log_in(client: Client, password: str, *, address: str = "10.0.0.1"):
    return client.post(
        "/accounts/login/",
        {"username": "clerk", "password": password},
        REMOTE_ADDR=address,
    )


def logged_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def fail_until_locked(client: Client, *, address: str = "10.0.0.1") -> None:
    for _ in range(settings.AXES_FAILURE_LIMIT):
        log_in(client, "wrong", address=address)


def test_repeated_failures_lock_the_user_out_from_that_address_even_with_the_right_password(
    client, clerk, caplog
):
    # Given as many wrong passwords as the limit allows
    with caplog.at_level(logging.WARNING, logger="axes"):
        fail_until_locked(client)

    # When the right password comes next
    response = log_in(client, PASSWORD)

    # Then it is refused with a page that says why and what to do
    assert response.status_code == 429
    page = response.content.decode()
    assert "Too many failed log-ins" in page
    assert "clerk" in page
    assert "ask an administrator to unlock it" in page
    assert not logged_in(client)
    # and every failure was logged and kept for the admin, without the password
    failures = [r.getMessage() for r in caplog.records if "login failure by" in r.getMessage()]
    assert len(failures) == settings.AXES_FAILURE_LIMIT
    assert all('"clerk"' in failure and "10.0.0.1" in failure for failure in failures)
    assert AccessFailureLog.objects.filter(username="clerk").count() == settings.AXES_FAILURE_LIMIT
    assert "wrong" not in AccessAttempt.objects.get(username="clerk").post_data


def test_one_failure_short_of_the_limit_the_right_password_still_logs_in(client, clerk):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        log_in(client, "wrong")

    response = log_in(client, PASSWORD)

    assert response.status_code == 302
    assert logged_in(client)


def test_the_lockout_is_per_username_and_address(clerk):
    fail_until_locked(Client())

    elsewhere = Client()
    response = log_in(elsewhere, PASSWORD, address="10.0.0.2")

    assert response.status_code == 302
    assert logged_in(elsewhere)


def test_an_admin_unlocks_by_deleting_the_access_attempt(client, clerk):
    # Given a locked-out clerk
    fail_until_locked(client)
    assert log_in(client, PASSWORD).status_code == 429
    admin = Client()
    admin.force_login(get_user_model().objects.create_superuser("root"))
    attempt = AccessAttempt.objects.get(username="clerk")

    # When an admin deletes the attempt from axes' admin
    listing = admin.get("/admin/axes/accessattempt/")
    deleted = admin.post(
        "/admin/axes/accessattempt/",
        {"action": "delete_selected", "_selected_action": [attempt.pk], "post": "yes"},
    )

    # Then the clerk logs in with the right password
    assert listing.status_code == 200
    assert "clerk" in listing.content.decode()
    assert deleted.status_code == 302
    assert log_in(client, PASSWORD).status_code == 302
    assert logged_in(client)


def test_after_the_cool_off_the_right_password_logs_in_again(client, clerk):
    fail_until_locked(client)
    assert log_in(client, PASSWORD).status_code == 429

    # When the cool-off has passed since the last failure
    AccessAttempt.objects.filter(username="clerk").update(
        attempt_time=AccessAttempt.objects.get(username="clerk").attempt_time
        - settings.AXES_COOLOFF_TIME
        - timedelta(seconds=1)
    )

    assert log_in(client, PASSWORD).status_code == 302
    assert logged_in(client)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_web_process_shows_the_lockout_page_after_repeated_failures():
    # Given the real web process (ASGI) and a user
    get_user_model().objects.create_user("clerk", password=PASSWORD)

    with daphne_server() as daphne:
        answers = [
            login_form_post(daphne.base_url, password)
            for password in ["wrong"] * settings.AXES_FAILURE_LIMIT + [PASSWORD]
        ]

    # Then the failures re-show the form until the limit, which answers the lockout page, as
    # does the right password after it
    statuses = [status for status, _ in answers]
    assert statuses == [200] * (settings.AXES_FAILURE_LIMIT - 1) + [429, 429]
    assert "Too many failed log-ins" in answers[-1][1]


def login_form_post(base_url: str, password: str) -> tuple[int, str]:
    """Fetch the login form, then post it as a browser would (own cookie jar each time)."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
    with opener.open(f"{base_url}/accounts/login/", timeout=10) as response:
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', response.read().decode())
    body = urllib.parse.urlencode(
        {"username": "clerk", "password": password, "csrfmiddlewaretoken": token.group(1)}
    ).encode()
    try:
        with opener.open(f"{base_url}/accounts/login/", data=body, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
