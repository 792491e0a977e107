"""What a worker tells about a batch it applies, read from the real process: its log (JSON lines
with LOG_FORMAT=json, each written during the job naming the batch, RQ's own lines at the level
RQ_LOG_LEVEL sets) and the job's duration on /metrics."""

import json
import re
import time

import pytest

from tests.builders import site_make, sku_make
from tests.ingest.helpers import json_body, received, source_make
from tests.ingest.test_worker_process import ingest_worker, post, wait_done
from tests.processes import subprocess_env, test_log_dir, worker_registered_wait

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def log_lines(log_name: str) -> list[dict]:
    text = (test_log_dir() / f"{log_name}.log").read_text()
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.mark.parametrize("rq_level", ["INFO", "WARNING"])
def test_a_job_logs_its_batch_id_on_every_line_and_rq_logs_at_its_own_level(
    client, redis_clean, rq_level, settings
):
    site_make("north")
    sku_make("A")
    _, token = source_make()
    log_name = f"worker-logs-rq-{rq_level.lower()}"
    env = subprocess_env(LOG_FORMAT="json", LOG_LEVEL="INFO", RQ_LOG_LEVEL=rq_level)
    with ingest_worker(env=env, log_name=log_name) as worker:
        worker_registered_wait(worker.pid)
        batch_id = post(client, token, json_body([received("A", 5)])).json()["batch_id"]
        wait_done([batch_id])
        deadline = time.monotonic() + 10
        while not any(line.get("batch_id") == batch_id for line in log_lines(log_name)):
            assert time.monotonic() < deadline, "no log line names the batch"
            time.sleep(0.1)

    lines = log_lines(log_name)
    of_the_job = [line for line in lines if line.get("batch_id") == batch_id]
    # the job's own line says what it did, and names the batch as a field of its own
    (summary,) = [line for line in of_the_job if line["logger"] == "ingest.jobs"]
    assert "status done" in summary["message"]
    assert "applied 1" in summary["message"]
    # lines written outside the job (start, heartbeats, sweeper) name no batch
    assert all(line["batch_id"] is None for line in lines if line not in of_the_job)
    # and the job's time is on /metrics, in the ingest queue's histogram
    settings.METRICS_TOKEN = "metrics-token-for-tests"
    scraped = client.get(
        "/metrics", headers={"Authorization": "Bearer metrics-token-for-tests"}
    ).content.decode()
    assert re.search(
        r'^inventory_ops_job_duration_seconds_count\{queue="ingest"\} [1-9]', scraped, re.M
    )
    # RQ's own INFO lines (a job picked up and finished) only when RQ_LOG_LEVEL lets them through
    rq_info = [
        line for line in lines if line["logger"].startswith("rq.") and line["level"] == "INFO"
    ]
    if rq_level == "INFO":
        assert any(batch_id in line["message"] for line in rq_info), lines
    else:
        assert rq_info == []
