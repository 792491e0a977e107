"""The ingest HTTP API in process: auth, signatures, limits, formats, JSON errors."""

import gzip
import json
import time
import zlib
from datetime import timedelta

import pytest

from ingest.models import DeadLetter, IngestBatch
from ingest.parsing import MAX_BODY_BYTES
from ingest.processing import batch_process
from tests.builders import site_make, sku_make
from tests.ingest.helpers import json_body, received, signature_header, source_make
from tests.redis_db import redis_test_db_flush

pytestmark = pytest.mark.django_db

URL = "/api/ingest/events"


@pytest.fixture
def catalog():
    site_make("north")
    sku_make("A")


def post(client, body, token, content_type="application/json", **headers):
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return client.post(URL, data=body, content_type=content_type, headers=headers)


def assert_json_error(response, status: int, fragment: str):
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    assert fragment in response.json()["detail"]


def test_json_batch_is_stored_before_202_and_reported(client, catalog):
    _, token = source_make()
    response = post(client, json_body([received("A", 2), received("A", -1)]), token)
    assert response.status_code == 202
    batch_id = response.json()["batch_id"]
    assert response.json()["accepted"] == 2
    assert IngestBatch.objects.get(pk=batch_id).status == "queued"
    batch_process(batch_id=batch_id)
    report = client.get(
        f"/api/ingest/batches/{batch_id}", headers={"Authorization": f"Bearer {token}"}
    ).json()
    assert report["status"] == "done"
    assert (report["applied"], report["duplicates"], report["rejected"], report["pending"]) == (
        1,
        0,
        1,
        0,
    )
    assert report["rejections"][0]["index"] == 1
    assert report["rejections"][0]["reason"].startswith("qty: ")


def test_ndjson_and_csv_bodies(client, catalog):
    _, token = source_make()
    ndjson = "\n".join(json.dumps(received("A", 1)) for _ in range(3)) + "\n"
    assert post(client, ndjson, token, "application/x-ndjson").json()["accepted"] == 3
    csv_text = (
        "event_id,type,occurred_at,site,sku,qty,counted_qty\r\n"
        "c1,stock.received,2026-11-23T10:00:00Z,north,A,5,\r\n"
        "c2,stock.counted,2026-11-23T10:05:00Z,north,A,,=SUM(A1:A9)\r\n"
        "c3,order.cancelled,2026-11-23T10:05:00Z,north,,,\r\n"
    )
    response = post(client, csv_text, token, "text/csv; charset=utf-8")
    assert response.status_code == 202
    batch_process(batch_id=response.json()["batch_id"])
    reasons = dict(DeadLetter.objects.values_list("event_id", "reason"))
    assert reasons["c2"].startswith("counted_qty: ")
    assert "CSV carries only stock.* events" in reasons["c3"]


@pytest.mark.parametrize(
    ("body", "content_type", "fragment"),
    [
        ("{", "application/json", "not valid JSON"),
        ('{"events": {}}', "application/json", '{"events": [ ... ]}'),
        ('{"events": []}', "application/json", "no events"),
        ('{"events": [NaN]}', "application/json", "not valid JSON"),
        ("[" * 100000 + "]" * 100000, "application/json", "nested too deeply"),
        ('{"a":1}\n{', "application/x-ndjson", "not valid JSON"),
        ("sku,qty\nA,1\n", "text/csv", "header lacks event_id"),
        ("event_id,type,occurred_at,site,lines\n", "text/csv", "lines"),
        ('event_id,type,occurred_at,site\n"a,b\n', "text/csv", "malformed"),
        ("event_id,type,occurred_at,site\na,b\n", "text/csv", "2 cells"),
        (b"\xff\xfe{}", "application/json", "not valid UTF-8"),
    ],
)
def test_unusable_bodies_get_400_and_nothing_is_kept(client, catalog, body, content_type, fragment):
    _, token = source_make()
    response = post(client, body, token, content_type)
    assert_json_error(response, 400, fragment)
    assert IngestBatch.objects.count() == 0


def test_too_many_events_is_400(client, catalog):
    _, token = source_make()
    body = "\n".join(['{"x":1}'] * 10_001)
    assert_json_error(post(client, body, token, "application/x-ndjson"), 400, "at most 10000")


def test_over_5_mib_is_413_and_just_under_is_accepted(client, catalog):
    _, token = source_make()
    filler = "x" * (MAX_BODY_BYTES - 200)
    under = json.dumps({"events": [{"event_id": "big", "pad": filler}]})
    assert len(under) < MAX_BODY_BYTES
    assert post(client, under, token).status_code == 202
    over = json.dumps({"events": [{"event_id": "big", "pad": filler + "x" * 400}]})
    assert_json_error(post(client, over, token), 413, "split it")


def test_unknown_content_type_is_415(client, catalog):
    _, token = source_make()
    assert_json_error(post(client, "<xml/>", token, "application/xml"), 415, "text/csv")


def test_missing_bad_and_rotated_tokens_are_401(client, catalog):
    from ingest.sources import feed_source_rotate_token

    source, token = source_make()
    body = json_body([received("A", 1)])
    assert_json_error(post(client, body, None), 401, "missing Authorization")
    assert_json_error(post(client, body, "nope"), 401, "unknown or rotated token")
    new_token = feed_source_rotate_token(source=source, grace=timedelta(0))
    assert_json_error(post(client, body, token), 401, "unknown or rotated token")
    assert post(client, body, new_token).status_code == 202


def test_disabled_source_is_403(client, catalog):
    source, token = source_make()
    source.is_active = False
    source.save()
    assert_json_error(post(client, json_body([received("A", 1)]), token), 403, "disabled")


def test_signature_required_flipped_byte_or_missing_is_401_and_nothing_stored(client, catalog):
    # given a source that requires a signature
    source, token = source_make(require_signature=True)
    body = json_body([received("A", 1)]).encode()
    good = signature_header(source.signing_secret, body)
    flipped = bytearray(body)
    flipped[10] ^= 0x01
    # when the signature is missing, or the body has a flipped byte
    missing = post(client, body, token)
    tampered = post(client, bytes(flipped), token, X_Signature=good)
    # then both are refused and nothing is stored
    assert_json_error(missing, 401, "requires X-Signature")
    assert_json_error(tampered, 401, "does not match")
    assert IngestBatch.objects.count() == 0
    assert post(client, body, token, X_Signature=good).status_code == 202


def test_rate_limit_answers_429_with_retry_after(client, catalog):
    redis_test_db_flush()
    source, token = source_make()
    source.rate_limit_per_minute = 2
    source.save()
    body = json_body([received("A", 1)])
    statuses = [post(client, body, token).status_code for _ in range(3)]
    assert statuses[:2] == [202, 202]
    response = post(client, body, token)
    assert_json_error(response, 429, "per minute")
    assert 1 <= int(response["Retry-After"]) <= 61


def test_other_sources_batches_are_404(client, catalog):
    _, token = source_make()
    _, other_token = source_make()
    batch_id = post(client, json_body([received("A", 1)]), token).json()["batch_id"]
    response = client.get(
        f"/api/ingest/batches/{batch_id}", headers={"Authorization": f"Bearer {other_token}"}
    )
    assert_json_error(response, 404, "no batch")
    response = client.get(
        "/api/ingest/batches/not-a-uuid", headers={"Authorization": f"Bearer {token}"}
    )
    assert_json_error(response, 404, "no batch")


def test_source_totals_conserve_events(client, catalog):
    source, token = source_make()
    first = post(client, json_body([received("A", 1, event_id="k"), {"bad": 1}]), token)
    batch_process(batch_id=first.json()["batch_id"])
    post(client, json_body([received("A", 1, event_id="k")]), token)  # not processed yet
    totals = client.get("/api/ingest/source", headers={"Authorization": f"Bearer {token}"}).json()
    assert totals == {
        "source": source.name,
        "accepted": 3,
        "applied": 1,
        "duplicates": 0,
        "rejected": 1,
        "pending": 1,
    }


def test_openapi_describes_the_ingest_endpoints(client):
    document = client.get("/api/openapi.json").json()
    push = document["paths"]["/api/ingest/events"]["post"]
    assert set(push["requestBody"]["content"]) == {
        "application/json",
        "application/x-ndjson",
        "text/csv",
    }
    assert {"202", "400", "401", "413", "415", "429", "503"} <= set(push["responses"])
    assert client.get("/api/docs").status_code == 200


def test_openapi_states_quantity_bounds_as_json_schema_keywords(client):
    document = client.get("/api/openapi.json").json()
    body = document["paths"]["/api/ingest/events"]["post"]["requestBody"]["content"]
    events = body["application/json"]["schema"]["properties"]["events"]["items"]["oneOf"]
    received = next(e for e in events if e["properties"]["type"].get("const") == "stock.received")
    assert received["properties"]["qty"]["exclusiveMinimum"] == 0
    assert received["properties"]["qty"]["maximum"] == 1_000_000_000
    assert "gt" not in received["properties"]["qty"]


def gzipped(text: str) -> bytes:
    return gzip.compress(text.encode())


def test_a_gzip_body_is_accepted_and_stored_decompressed(client, catalog):
    _, token = source_make()
    body = json_body([received("A", 2, event_id="gz-1"), received("A", 3, event_id="gz-2")])

    response = post(client, gzipped(body), token, Content_Encoding="gzip")

    assert response.status_code == 202, response.content
    batch = IngestBatch.objects.get(pk=response.json()["batch_id"])
    assert batch.raw_body == body
    assert batch_process(batch_id=batch.pk)
    batch.refresh_from_db()
    assert (batch.status, batch.applied) == ("done", 2)


def test_the_size_limit_applies_after_decompression(client, catalog):
    # given a body just over 5 MiB once decompressed, a few kilobytes compressed
    _, token = source_make()
    event_text = json.dumps(received("A", 1, event_id="big", reference="x" * 190))
    head, tail = '{"events": [' + event_text + "]", "}"
    body = head + " " * (MAX_BODY_BYTES - len(head) - len(tail)) + tail
    assert len(body) == MAX_BODY_BYTES
    just_under, just_over = gzipped(body), gzipped(body + " ")

    over = post(client, just_over, token, Content_Encoding="gzip")
    under = post(client, just_under, token, Content_Encoding="gzip")

    assert len(just_over) < 100_000
    assert_json_error(over, 413, "once decompressed")
    assert under.status_code == 202
    assert IngestBatch.objects.count() == 1


def test_a_decompression_bomb_is_refused_without_expanding_it(client, catalog):
    # given 1 GiB of zeros in about a megabyte of gzip
    _, token = source_make()
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1024 * 1024)
    bomb = b"".join(compressor.compress(zeros) for _ in range(1024)) + compressor.flush()
    assert len(bomb) < 1_100_000
    started = time.monotonic()

    response = post(client, bomb, token, Content_Encoding="gzip")

    assert_json_error(response, 413, "once decompressed")
    assert time.monotonic() - started < 10  # it stopped after 5 MiB of output
    assert not IngestBatch.objects.exists()


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"not gzip at all", "not valid gzip"),
        # mtime 0: the same bytes, so the same test id, in every pytest-xdist worker
        (gzip.compress(b'{"events": []}', mtime=0)[:-6], "cut short"),
    ],
    # named, not by their bytes: gzip's header holds the time it ran, and a test whose id
    # changes from run to run cannot be run by id (mutmut does)
    ids=["not-gzip", "cut-short"],
)
def test_broken_gzip_is_400_and_nothing_is_kept(client, catalog, body, fragment):
    _, token = source_make()

    response = post(client, body, token, Content_Encoding="gzip")

    assert_json_error(response, 400, fragment)
    assert not IngestBatch.objects.exists()


def test_an_unknown_content_encoding_is_415(client, catalog):
    _, token = source_make()

    response = post(client, b"...", token, Content_Encoding="br")

    assert_json_error(response, 415, "Content-Encoding")


def test_the_signature_of_a_gzip_body_covers_the_bytes_as_sent(client, catalog):
    source, token = source_make(require_signature=True)
    compressed = gzipped(json_body([received("A", 1)]))

    def signed(data: bytes) -> str:
        return signature_header(source.signing_secret, data)

    ok = post(
        client,
        compressed,
        token,
        Content_Encoding="gzip",
        X_Signature=signed(compressed),
    )
    of_the_text = post(
        client,
        compressed,
        token,
        Content_Encoding="gzip",
        X_Signature=signed(gzip.decompress(compressed)),
    )

    assert ok.status_code == 202, ok.content
    assert_json_error(of_the_text, 401, "does not match")
