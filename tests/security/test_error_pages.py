"""With DEBUG off (the default), errors show friendly pages, never a traceback or Django's
technical pages, and the pages themselves obey the Content-Security-Policy."""

import pytest
from django.contrib.auth import get_user_model

pytestmark = pytest.mark.django_db


@pytest.fixture
def person(client):
    client.force_login(get_user_model().objects.create_user("someone"))
    return client


def test_an_unknown_page_is_a_friendly_404(person):
    response = person.get("/no-such-page/")

    page = response.content.decode()
    assert response.status_code == 404
    assert "There is no page at <code>/no-such-page/</code>" in page
    assert "Back to the dashboard" in page
    assert "URLconf" not in page and "Traceback" not in page


def test_a_page_the_role_does_not_allow_is_a_friendly_403(person):
    response = person.get("/oncall/")

    page = response.content.decode()
    assert response.status_code == 403
    assert "does not have the role this page or action needs" in page
    assert "someone" in page


@pytest.mark.urls("tests.security.crashing_urls")
def test_a_bug_is_a_friendly_500_without_a_traceback(person):
    person.raise_request_exception = False

    response = person.get("/crash/")

    page = response.content.decode()
    assert response.status_code == 500
    assert "Something went wrong on our side" in page
    assert "a bug on our side" not in page and "Traceback" not in page
    assert " style=" not in page and "<script" not in page
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
