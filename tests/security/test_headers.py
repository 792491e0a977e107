"""Security headers on real responses: the Content-Security-Policy on every kind of answer."""

import http.cookiejar
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

import pytest
from django.contrib.auth import get_user_model

from tests.processes import daphne_server, subprocess_env

pytestmark = pytest.mark.django_db


def csp_directives(response) -> dict[str, list[str]]:
    header = response.headers["Content-Security-Policy"]
    parts = [part.split() for part in header.split(";") if part.strip()]
    return {part[0]: part[1:] for part in parts}


@pytest.fixture
def root_client(client):
    client.force_login(
        get_user_model().objects.create_user("root", is_staff=True, is_superuser=True)
    )
    return client


@pytest.mark.parametrize(
    "path",
    ["/", "/admin/", "/oncall/", "/accounts/login/", "/no-such-page/", "/healthz", "/api/docs"],
)
def test_every_answer_carries_a_csp_without_inline_script(root_client, path):
    response = root_client.get(path)

    directives = csp_directives(response)
    assert directives["script-src"] == ["'self'"]
    policy = response.headers["Content-Security-Policy"]
    assert "'unsafe-inline'" not in policy
    assert "'unsafe-eval'" not in policy
    assert directives["object-src"] == ["'none'"]
    assert directives["frame-ancestors"] == ["'none'"]


def test_the_api_answers_errors_with_the_csp_too(client):
    response = client.post("/api/ingest/events", data="{}", content_type="application/json")

    assert response.status_code == 401
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]


def test_pages_hold_no_inline_script_or_style_attribute(root_client):
    # Given the pages people use most, when rendered, then every script has a src or is data
    for path in ["/", "/?kiosk=1", "/oncall/", "/accounts/login/"]:
        html = root_client.get(path).content.decode()
        for chunk in html.split("<script")[1:]:
            opening = chunk.split(">", 1)[0]
            assert "src=" in opening or 'type="application/json"' in opening, (path, opening)
        assert " style=" not in html, path
        assert " onclick=" not in html and " onload=" not in html, path


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def answer_unfollowed(request: urllib.request.Request):
    """Send the request without following redirects; answer (status, headers)."""
    try:
        with urllib.request.build_opener(NoRedirect).open(request, timeout=10) as response:
            return response.status, response.headers
    except urllib.error.HTTPError as error:
        return error.code, error.headers


def daphne_get(url: str, headers: dict[str, str] | None = None):
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 (local URL)
    return answer_unfollowed(request)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_with_https_on_daphne_sends_hsts_secure_cookies_and_redirects_plain_http():
    # Given the real web process behind a TLS proxy (HTTPS=1), and one user
    get_user_model().objects.create_user("clerk", password="pw-for-tests")

    with daphne_server(env=subprocess_env(HTTPS="1")) as daphne:
        # When the proxy forwards an https request for the login page
        status, headers = daphne_get(
            f"{daphne.base_url}/accounts/login/", {"X-Forwarded-Proto": "https"}
        )
        # ... and when someone reaches the process over plain http
        plain_status, plain_headers = daphne_get(f"{daphne.base_url}/accounts/login/")
        probe_status, _ = daphne_get(f"{daphne.base_url}/healthz")
        login = log_in_over_https(daphne.base_url)

    # Then the page comes with HSTS, the CSP and a CSRF cookie sent over TLS only
    assert status == 200
    assert headers["Strict-Transport-Security"] == ("max-age=31536000; includeSubDomains; preload")
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    csrf_cookie = next(c for c in headers.get_all("Set-Cookie") if c.startswith("csrftoken="))
    assert "Secure" in csrf_cookie
    # plain http is sent to https, except the process's own probe
    assert plain_status == 301
    assert plain_headers["Location"] == f"https://{daphne.base_url.split('//')[1]}/accounts/login/"
    assert probe_status == 200
    # and the session cookie of a login is Secure and HttpOnly
    assert login.status == 302
    session_cookie = next(c for c in login.cookies if c.startswith("sessionid="))
    assert "Secure" in session_cookie and "HttpOnly" in session_cookie


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_without_https_daphne_sends_no_hsts_and_plain_cookies():
    with daphne_server() as daphne:
        status, headers = daphne_get(f"{daphne.base_url}/accounts/login/")

    assert status == 200
    assert "Strict-Transport-Security" not in headers
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    csrf_cookie = next(c for c in headers.get_all("Set-Cookie") if c.startswith("csrftoken="))
    assert "Secure" not in csrf_cookie


@dataclass
class LoginAnswer:
    status: int
    cookies: list[str]


def log_in_over_https(base_url: str) -> LoginAnswer:
    """Log in as clerk through the login form, as a proxy forwarding https would."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    forwarded = {"X-Forwarded-Proto": "https"}
    login_page = urllib.request.Request(f"{base_url}/accounts/login/", headers=forwarded)  # noqa: S310
    with opener.open(login_page, timeout=10) as response:
        page = response.read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    # The Secure cookie is not sent back over this plain-http test connection: send it by hand.
    csrf = next(cookie.value for cookie in jar if cookie.name == "csrftoken")
    body = urllib.parse.urlencode(
        {"username": "clerk", "password": "pw-for-tests", "csrfmiddlewaretoken": token}
    ).encode()
    request = urllib.request.Request(  # noqa: S310 (local URL)
        f"{base_url}/accounts/login/",
        data=body,
        headers={
            **forwarded,
            "Cookie": f"csrftoken={csrf}",
            "Referer": f"https://{base_url.split('//')[1]}/accounts/login/",
        },
    )
    status, headers = answer_unfollowed(request)
    return LoginAnswer(status=status, cookies=headers.get_all("Set-Cookie") or [])
