"""Security headers on real responses: the Content-Security-Policy on every kind of answer."""

import pytest
from django.contrib.auth import get_user_model

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
