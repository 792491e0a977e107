"""Logs as JSON lines (LOG_FORMAT=json) with the request's id on every line of a request, and
the id on the response: a real Daphne, its real output."""

import json
import logging
import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient

from tests.processes import daphne_server, subprocess_env


def test_the_response_carries_the_request_id_sent_or_a_new_one(client):
    sent = client.get("/healthz", headers={"X-Request-ID": "proxy-1f2e3d"})
    fresh = client.get("/healthz")

    assert sent["X-Request-ID"] == "proxy-1f2e3d"
    assert re.fullmatch(r"[0-9a-f]{32}", fresh["X-Request-ID"])


def test_an_unusable_request_id_is_replaced(client):
    response = client.get("/healthz", headers={"X-Request-ID": "two words\tand a tab"})

    assert re.fullmatch(r"[0-9a-f]{32}", response["X-Request-ID"])


@pytest.mark.django_db(transaction=True)
def test_a_log_line_written_during_a_request_names_the_request(caplog):
    # The web process serves ASGI: the async client takes the same path through Django.
    client = AsyncClient(headers={"Host": "127.0.0.1"})
    with caplog.at_level(logging.WARNING, logger="django.request"):
        async_to_sync(client.get)("/api/ingest/source", headers={"X-Request-ID": "req-in-process"})

    [line] = [r for r in caplog.records if "/api/ingest/source" in r.getMessage()]
    assert line.request_id == "req-in-process"


def api_get(url: str, request_id: str) -> int:
    request = urllib.request.Request(url, headers={"X-Request-ID": request_id})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_daphne_with_log_format_json_writes_json_lines_carrying_the_request_id():
    # given a web process logging JSON
    with daphne_server(env=subprocess_env(LOG_FORMAT="json")) as daphne:
        # when two requests fail authentication (Django logs each 401 as a warning)
        statuses = [
            api_get(f"{daphne.base_url}/api/ingest/source", request_id)
            for request_id in ("first-request", "second-request")
        ]
        log_path = Path(daphne.log_file.name)

    # then every line our logging wrote is a JSON object, each 401 line with its request's id
    assert statuses == [401, 401]
    records = [
        json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")
    ]
    unauthorized = {
        record["request_id"]
        for record in records
        if record["logger"] == "django.request" and "/api/ingest/source" in record["message"]
    }
    assert unauthorized == {"first-request", "second-request"}
    assert all({"timestamp", "level", "logger", "message"} <= set(record) for record in records)
