"""The accept side of the ingest API: what is counted, what is stored, what is queued, and the
web process's database connections."""

import time
import urllib.request

import django_rq
import pytest
from django.db import connection
from hypothesis import given, settings
from hypothesis import strategies as st
from rq.job import Job

from ingest.models import IngestBatch
from ingest.parsing import BodyError, events_count, events_parse
from ingest.receiving import batch_job_id
from tests.ingest.helpers import json_body, received, source_make
from tests.ingest.test_fuzz import bodies
from tests.processes import daphne_server
from tests.redis_db import redis_test_db_flush

URL = "/api/ingest/events"

# What the fast parser refuses and the reference parser takes (or words differently).
edge_bodies = st.sampled_from(
    [
        '{"events": [{"event_id": "\\ud800"}]}',
        '{"events": [{"qty": 123456789012345678901234567890}]}',
        '{"events": [{"qty": 1e400}]}',
        '{"events": [{"qty": 1.7976931348623157e308}, {"qty": -0}]}',
        '{"events": [NaN]}',
        '{"events": [1], "events": [1, 2]}',
        '{"events": [' + "[" * 1100 + "]" * 1100 + "]}",
        "[" * 1500 + "]" * 1500,
        '{"event_id": "a"}\n\n  \n{"event_id": "\\udfff"}\n',
        '{"event_id": "a"}\u2028{"event_id": "b"}',
        '{"a": 1}\n{"a": Infinity}\n',
        "\ufeff" + '{"events": [{}]}',
        "",
        " \n ",
    ]
)


@settings(max_examples=400, deadline=None)
@given(body=bodies | edge_bodies, body_format=st.sampled_from(["json", "ndjson", "csv"]))
def test_the_api_counts_what_the_worker_will_parse_or_refuses_it_the_same_way(body, body_format):
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        expected = len(events_parse(body_format=body_format, text=text))
    except BodyError as error:
        with pytest.raises(BodyError) as refused:
            events_count(body_format=body_format, text=text)
        assert (refused.value.detail, refused.value.errors) == (error.detail, error.errors)
    else:
        assert events_count(body_format=body_format, text=text) == expected


@pytest.fixture
def token(db):
    return source_make()[1]


def post(client, body, token, content_type="application/json"):
    return client.post(
        URL, data=body, content_type=content_type, headers={"Authorization": f"Bearer {token}"}
    )


@pytest.mark.parametrize(
    ("body", "content_type", "accepted"),
    [
        ('{"events": [{"event_id": "a", "sku": "\\ud800"}, {"event_id": "b"}]}', "json", 2),
        ('{"events": [' + "[" * 1100 + "]" * 1100 + "]}", "json", 1),
        ('{"event_id": "a"}\n{"event_id": "\\udfff"}\n\n', "x-ndjson", 2),
    ],
)
def test_bodies_the_fast_parser_refuses_are_still_taken_when_the_worker_can_parse_them(
    client, token, body, content_type, accepted
):
    response = post(client, body, token, f"application/{content_type}")
    assert response.status_code == 202, response.content
    assert response.json()["accepted"] == accepted


def test_the_raw_body_is_stored_exactly_as_received(client, token):
    body = '\ufeff{"events": [{"event_id": "é✓", "qty": 123456789012345678901234567890}]}'
    response = post(client, body.encode(), token)
    assert response.status_code == 202
    stored = IngestBatch.objects.get(pk=response.json()["batch_id"]).raw_body
    assert stored == body.removeprefix("\ufeff")  # a byte order mark is not part of the JSON


@pytest.mark.django_db(transaction=True)
def test_the_job_is_on_the_queue_once_the_batch_is_committed(client):
    queue_connection = django_rq.get_connection("ingest")
    redis_test_db_flush()
    _, token = source_make()
    response = post(client, json_body([received("A", 1), received("A", 2)]), token)
    assert response.status_code == 202
    batch_id = response.json()["batch_id"]
    job = Job.fetch(batch_job_id(batch_id), connection=queue_connection)
    assert (job.get_status(), job.args, job.origin) == ("queued", (batch_id,), "ingest")
    assert (job.result_ttl, job.failure_ttl) == (300, 7 * 24 * 3600)
    assert job.id.encode() in queue_connection.lrange("rq:queue:ingest", 0, -1)


def test_raw_bodies_are_compressed_with_lz4_on_postgresql(postgres_only, db):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT attcompression FROM pg_attribute WHERE attrelid = "
            "'ingest_ingestbatch'::regclass AND attname = 'raw_body'"
        )
        (method,) = cursor.fetchone()
    assert method == "l"


def _other_backends() -> set[int]:
    """PostgreSQL backends on the test database other than this process's own."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        )
        return {pid for (pid,) in cursor.fetchall()}


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_daphne_reuses_its_database_connections_from_request_to_request(postgres_only):
    # given the real web process and a feed source
    _, token = source_make()
    with daphne_server() as web:

        def push() -> None:
            request = urllib.request.Request(  # noqa: S310 (local URL)
                f"{web.base_url}{URL}",
                data=json_body([received("A", 1)]).encode(),
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
                assert answer.status == 202

        push()
        deadline = time.monotonic() + 10
        while len(_other_backends()) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)  # the pool opens its second connection in the background
        before = _other_backends()
        # when it answers many requests
        for _ in range(20):
            push()
        # then they were served by the connections it already had (a new backend per request
        # costs ~7 ms of CPU; connections were also left open until garbage collection)
        assert _other_backends() <= before
    assert IngestBatch.objects.count() == 21
