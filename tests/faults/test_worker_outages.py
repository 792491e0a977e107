"""A worker (the Procfile line) through PostgreSQL and Redis restarts: it resumes by itself, its
scheduler keeps the periodic alert evaluation going, and its liveness can be probed."""

import signal
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import redis
from rq import Queue

from tests.faults.stack import Stack

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@pytest.fixture(scope="module")
def stack():
    stack = Stack(
        name="worker-outages",
        INGEST_SWEEP_SECONDS="1",
        INGEST_SWEEP_GRACE_SECONDS="2",
        WORKER_HEARTBEAT_SECONDS="1",
        ALERTS_EVALUATION_INTERVAL="1",
    )
    try:
        yield stack
    finally:
        stack.close()


def received(event_id: str, sku: str = "A", qty: int = 1) -> dict:
    occurred_at = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    return {
        "event_id": event_id,
        "type": "stock.received",
        "occurred_at": occurred_at,
        "site": "north",
        "sku": sku,
        "qty": qty,
    }


def batch_status(stack: Stack, batch_id: str) -> str:
    return stack.get(f"/api/ingest/batches/{batch_id}").json()["status"]


def test_the_first_job_after_a_postgresql_restart_succeeds(stack):
    # given the web process and a worker that has applied a batch
    stack.web_start()
    worker = stack.worker_start()
    first = stack.post_events([received("pg-before")]).json()["batch_id"]
    stack.wait_for(lambda: batch_status(stack, first) == "done", "the first batch")
    # when PostgreSQL stops at once and starts again
    stack.pg.stop("immediate")
    stack.pg.start()
    stack.wait_for(lambda: stack.get("/api/stock").status == 200, "the web process to recover")
    # then the next batch is applied by the first job that takes it, by the same worker
    answer = stack.post_events([received("pg-after")])
    assert answer.status == 202, answer
    batch_id = answer.json()["batch_id"]
    stack.wait_for(lambda: batch_status(stack, batch_id) == "done", "the batch after restart", 30)
    ((attempts,),) = stack.sql("SELECT attempts FROM ingest_ingestbatch WHERE id = %s", batch_id)
    assert attempts == 1
    assert worker.poll() is None
    assert "the connection is closed" not in log_text(stack, "worker")


def log_text(stack: Stack, name: str) -> str:
    stack.processes[name].log_file.flush()
    return open(stack.processes[name].log_file.name, errors="replace").read()


def test_busy_workers_outlive_a_redis_restart_and_finish_every_batch(stack):
    # given two workers busy with a stream of batches
    workers = [stack.processes.get("worker") or stack.worker_start(), stack.worker_start("w2")]
    accepted, stop = [], threading.Event()

    def feed():
        for round_ in range(10_000):
            if stop.is_set():
                return
            events = [received(f"redis-{round_}-{i}", qty=1) for i in range(100)]
            answer = stack.post_events(events)
            if answer.status == 202:
                accepted.append(answer.json()["batch_id"])
            time.sleep(0.05)

    before = stack.stock().get(("north", "A"), (0, 0))[0]
    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        stack.wait_for(lambda: len(accepted) >= 5, "batches to flow")
        # when Redis is killed and comes back empty a few seconds later
        stack.redis.kill()
        time.sleep(3)
        stack.redis.start()
        time.sleep(2)
    finally:
        stop.set()
        feeder.join()
    # then both workers are still running and every accepted batch is applied, once
    stack.wait_for(
        lambda: all(batch_status(stack, b) == "done" for b in accepted), "every batch", 60
    )
    assert [worker.poll() for worker in workers] == [None, None]
    assert stack.stock()[("north", "A")][0] == before + 100 * len(accepted)
    assert "ledger OK" in stack.manage("check_ledger")


def test_periodic_alert_evaluation_goes_on_after_redis_comes_back_empty(stack):
    # given a rule on failed jobs (only the periodic evaluation looks at them) and workers
    # running the scheduler (the Procfile line)
    stack.processes.get("worker") or stack.worker_start()
    stack.manage(
        "shell",
        "-c",
        "from oncall.models import AlertRule; "
        "AlertRule.objects.create(name='Failed jobs', kind='failed_jobs', threshold=0)",
    )
    # when Redis restarts without its data (the scheduled evaluation chain is gone with it)
    stack.redis.kill()
    time.sleep(2)
    stack.redis.start()
    restarted = time.monotonic()
    # and a job fails afterwards
    connection = redis.Redis.from_url(stack.redis.url())
    Queue("ingest", connection=connection).enqueue("tests.oncall.test_console.explode")
    # then an evaluation nobody asked for opens the alert, within seconds
    stack.wait_for(
        lambda: stack.sql("SELECT 1 FROM oncall_alert WHERE status = 'open'"),
        "the failed-jobs alert",
        30,
    )
    assert time.monotonic() - restarted < 30


def test_worker_alive_follows_the_worker_not_redis(stack):
    worker = stack.worker_start("probed")

    def alive(*options) -> int:
        return stack.manage("worker_alive", *options, check=False).returncode

    # a running worker is alive, here and in the deployment
    assert alive("--pid", worker.pid) == 0
    assert alive("--anywhere") == 0
    # while Redis is away it is still alive (it resumes by itself); the deployment cannot tell
    stack.redis.kill()
    try:
        time.sleep(3.5)  # more than three heartbeats
        assert alive("--pid", worker.pid) == 0
        assert alive("--anywhere") == 1
    finally:
        stack.redis.start()
    # killed outright, it is dead at once (its process is gone)
    stack.stop("probed", sig=signal.SIGKILL)
    assert alive("--pid", worker.pid) == 1


def test_a_worker_stops_on_sigterm_at_once_even_while_it_waits_for_redis(stack):
    # given a worker, and one whose Redis is away
    calm = stack.worker_start("calm")
    waiting = stack.worker_start("waiting")
    # when each is asked to stop (a deploy, a scale-down)
    stack.stop("calm")
    stack.redis.kill()
    try:
        time.sleep(2)
        stack.stop("waiting")
    finally:
        stack.redis.start()
    # then each stopped by itself (stop_process kills what is still there after 10 s)
    assert (calm.returncode, waiting.returncode) == (0, 0)
