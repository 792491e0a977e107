"""The ingest API when Redis or the database fails under it (real servers, no mocks).

Redis refusing connections must not cost a feed anything: the batch is stored and answered
202, and waits in the database for the sweeper. A database that refuses the write or the read
answers 503 in JSON, telling the producer to retry, and keeps nothing.
"""

import pytest

from ingest.models import BatchStatus, IngestBatch
from ingest.processing import batch_process
from tests.builders import site_make, sku_make
from tests.db_locks import table_locked
from tests.ingest.helpers import json_body, received, source_make
from tests.processes import free_port

URL = "/api/ingest/events"


@pytest.fixture
def catalog():
    site_make("north")
    sku_make("A")


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def assert_json_503(response, fragment: str) -> None:
    assert response.status_code == 503, response.content
    assert response["Content-Type"].startswith("application/json")
    assert fragment in response.json()["detail"]


@pytest.mark.django_db
def test_with_redis_refusing_connections_a_feed_is_stored_and_answered_202(
    client, catalog, settings, caplog
):
    # given the queue's Redis refusing connections (nothing listens on its port)
    refused = f"redis://127.0.0.1:{free_port()}/1"
    settings.RQ_QUEUES = {
        name: {**queue, "URL": refused} for name, queue in settings.RQ_QUEUES.items()
    }
    _, token = source_make()

    # when a feed pushes a batch
    with caplog.at_level("WARNING"):
        response = client.post(
            URL,
            data=json_body([received("A", 4)]),
            content_type="application/json",
            headers=auth(token),
        )

    # then it is accepted and stored, queued for the sweeper, and applies like any other
    assert response.status_code == 202, response.content
    batch = IngestBatch.objects.get(pk=response.json()["batch_id"])
    assert (batch.status, batch.accepted) == (BatchStatus.QUEUED, 1)
    assert "rate limit not checked" in caplog.text
    batch_process(batch_id=batch.pk)
    batch.refresh_from_db()
    assert (batch.status, batch.applied) == (BatchStatus.DONE, 1)


@pytest.mark.django_db(transaction=True)
def test_a_batch_the_database_cannot_store_is_503_and_nothing_is_kept(
    client, catalog, postgres_only
):
    # given a feed source, and the batches table that the store cannot write to in time
    _, token = source_make()
    with table_locked("ingest_ingestbatch"):
        # when a feed pushes a batch
        response = client.post(
            URL,
            data=json_body([received("A", 4)]),
            content_type="application/json",
            headers=auth(token),
        )

    # then the producer is told, in JSON, that nothing was kept and to retry; nothing was kept
    assert_json_503(response, "nothing was kept: retry")
    assert IngestBatch.objects.count() == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("path", "table_read"),
    [
        ("/api/ingest/batches/{batch_id}", "ingest_ingestbatch"),
        # a source's totals are kept in a table of their own, so /metrics need not sum batches
        ("/api/ingest/source", "ingest_sourceeventtotals"),
    ],
)
def test_status_reads_the_database_cannot_answer_are_503(
    client, catalog, postgres_only, path, table_read
):
    # given a stored batch, and the table the read needs that it cannot reach in time
    _, token = source_make()
    stored = client.post(
        URL,
        data=json_body([received("A", 4)]),
        content_type="application/json",
        headers=auth(token),
    )
    url = path.format(batch_id=stored.json()["batch_id"])
    with table_locked(table_read):
        # when the producer asks for the batch's status or its source's totals
        response = client.get(url, headers=auth(token))

    # then it is told to retry shortly, in JSON; and once the database answers, it is answered
    assert_json_503(response, "the database is unreachable: retry shortly")
    assert client.get(url, headers=auth(token)).status_code == 200
