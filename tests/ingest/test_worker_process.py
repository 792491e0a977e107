"""Batches through the HTTP API, real Redis, real RQ worker processes and PostgreSQL."""

import json
import random
import signal
import socket
import threading
import time
import urllib.request
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection

from ingest.dead_letters import dead_letters_replay
from ingest.models import BatchStatus, DeadLetter, IngestBatch, Order, ProcessedEvent
from ledger.models import Movement, MovementKind, StockLevel
from tests.builders import site_make, sku_make
from tests.ingest.helpers import (
    event,
    json_body,
    order_created,
    order_delivered,
    order_dispatched,
    poison_event,
    received,
    slow_event,
    source_make,
)
from tests.processes import (
    RedisServer,
    daphne_server,
    free_port,
    manage_py,
    running,
    stop_process,
    subprocess_env,
)
from tests.redis_db import redis_test_db_flush

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

URL = "/api/ingest/events"


@pytest.fixture
def catalog(postgres_only):
    redis_test_db_flush()
    return site_make("north"), site_make("south"), sku_make("A"), sku_make("B")


def ingest_worker(*, env=None, log_name="ingest-worker"):
    """The Procfile's worker (SimpleWorker + sweeper), sweeping fast for tests."""
    env = env or subprocess_env()
    env.setdefault("INGEST_SWEEP_SECONDS", "0.5")
    env.setdefault("INGEST_SWEEP_GRACE_SECONDS", "1")
    args = manage_py("rqworker", "ingest", "--worker-class", "ingest.worker.IngestWorker")
    return running(args, env=env, log_name=log_name)


def post(client, token, body, content_type="application/json"):
    return client.post(
        URL, data=body, content_type=content_type, headers={"Authorization": f"Bearer {token}"}
    )


def wait_done(batch_ids, timeout=60) -> list[IngestBatch]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batches = list(IngestBatch.objects.filter(pk__in=batch_ids))
        if len(batches) == len(batch_ids) and all(b.status == BatchStatus.DONE for b in batches):
            return batches
        time.sleep(0.2)
    states = list(IngestBatch.objects.filter(pk__in=batch_ids).values_list("status", flat=True))
    raise TimeoutError(f"batches not done within {timeout}s: {states}")


def stock() -> dict:
    return {
        (site, sku): (on_hand, reserved)
        for site, sku, on_hand, reserved in StockLevel.objects.values_list(
            "site__code", "sku__code", "on_hand", "reserved"
        )
    }


def assert_ledger_ok():
    call_command("check_ledger")


def test_the_same_feed_sent_twice_is_all_duplicates_the_second_time(client, catalog):
    _, token = source_make()
    feed = json_body(
        [
            received("A", 50),
            order_created("o-1", {"A": 3, "B": 1}),
            order_dispatched("o-1"),
            order_delivered("o-1"),
        ]
    )
    with ingest_worker():
        first = post(client, token, feed).json()["batch_id"]
        wait_done([first])
        before, movements = stock(), Movement.objects.count()
        second = post(client, token, feed).json()["batch_id"]
        (batch,) = wait_done([second])
    assert (batch.applied, batch.duplicates, batch.rejected) == (0, 4, 0)
    assert stock() == before and Movement.objects.count() == movements
    assert before[("north", "A")] == (47, 0)
    assert_ledger_ok()


def test_mixed_good_duplicate_and_bad_events(client, catalog):
    _, token = source_make()
    with ingest_worker():
        first = post(client, token, json_body([received("A", 5, event_id="seen")]))
        wait_done([first.json()["batch_id"]])
        mixed = [
            received("A", 2, event_id="good-1"),
            received("A", 5, event_id="seen"),
            event("stock.transferred", event_id="good-2", sku="A", qty=1, to_site="south"),
            received("A", "many", event_id="bad-type"),
            event("stock.transferred", event_id="bad-site", sku="A", qty=1, to_site="mars"),
            {"event_id": "bad-kind", "type": "stock.teleported", "site": "north"},
            "not an object",
        ]
        batch_id = post(client, token, json_body(mixed)).json()["batch_id"]
        (batch,) = wait_done([batch_id])
    assert (batch.accepted, batch.applied, batch.duplicates, batch.rejected) == (7, 2, 1, 4)
    reasons = dict(DeadLetter.objects.filter(batch=batch).values_list("index", "reason"))
    assert reasons[3].startswith("qty: ")
    assert reasons[4] == "to_site: unknown site 'mars'"
    assert reasons[5].startswith("type: ")
    assert reasons[6] == "an event must be a JSON object"
    assert stock()[("north", "A")] == (6, 0) and stock()[("south", "A")] == (1, 0)


def test_out_of_order_order_events_end_as_in_order(client, catalog):
    _, token = source_make("web-shop")
    _, courier_token = source_make("courier-app")
    with ingest_worker():
        # the courier app reports delivery and dispatch before the shop reports the order
        ids = [
            post(client, courier_token, json_body([order_delivered("o-7", minutes=40)])),
            post(client, courier_token, json_body([order_dispatched("o-7", minutes=10)])),
        ]
        wait_done([r.json()["batch_id"] for r in ids])
        assert stock() == {}
        created = post(client, token, json_body([order_created("o-7", {"A": 2}, minutes=0)]))
        wait_done([created.json()["batch_id"]])
        in_order = [
            order_created("o-8", {"A": 2}, site="south", minutes=0),
            order_dispatched("o-8", site="south", minutes=10),
            order_delivered("o-8", site="south", minutes=40),
        ]
        wait_done([post(client, token, json_body(in_order)).json()["batch_id"]])
    assert stock()[("north", "A")] == stock()[("south", "A")] == (-2, 0)
    held_batches = IngestBatch.objects.filter(source__name="courier-app")
    assert sorted(held_batches.values_list("applied", "held")) == [(1, 0), (1, 0)]
    assert_ledger_ok()


def large_feed(count: int, prefix: str) -> str:
    skus = ["A", "B"]
    return json_body(
        [received(skus[i % 2], 1 + i % 3, event_id=f"{prefix}-{i}") for i in range(count)]
    )


# Tables a batch of receipts and orders writes to, row by row, inside its transaction: the
# idempotency keys first, then orders, then the ledger and the stock levels.
WRITTEN_TABLES = (
    "ingest_processedevent",
    "ingest_order",
    "inventory_ops_movement",
    "inventory_ops_stocklevel",
)


@contextmanager
def rows_written_counted(*, seconds_per_row: float):
    """Count every row written to WRITTEN_TABLES in a sequence (sequences are not rolled back,
    so the count shows rows of a transaction not yet committed), and make each row take
    `seconds_per_row`, so that a batch's transaction lasts long enough to be killed anywhere.
    Yields a function that reads the count and, with reset=True, starts it again at 0."""
    with connection.cursor() as cursor:
        cursor.execute("CREATE SEQUENCE test_rows_written MINVALUE 0 START 0")
        cursor.execute(
            "CREATE FUNCTION test_row_written() RETURNS trigger AS $$ BEGIN "
            f"PERFORM nextval('test_rows_written'); PERFORM pg_sleep({seconds_per_row}); "
            "RETURN NULL; END $$ LANGUAGE plpgsql"
        )
        for table in WRITTEN_TABLES:
            cursor.execute(
                f"CREATE TRIGGER test_row_written AFTER INSERT OR UPDATE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION test_row_written()"
            )

    def rows_written(reset: bool = False) -> int:
        with connection.cursor() as cursor:
            if reset:
                cursor.execute("SELECT setval('test_rows_written', 0, false)")
            cursor.execute(
                "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM test_rows_written"
            )
            return cursor.fetchone()[0]

    try:
        yield rows_written
    finally:
        with connection.cursor() as cursor:
            for table in WRITTEN_TABLES:
                cursor.execute(f"DROP TRIGGER IF EXISTS test_row_written ON {table}")
            cursor.execute("DROP FUNCTION IF EXISTS test_row_written()")
            cursor.execute("DROP SEQUENCE IF EXISTS test_rows_written")


def batch_unlocked_wait(batch_id, timeout=60) -> None:
    """Wait until no transaction holds the batch: a killed worker's has been rolled back."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT 1 FROM ingest_ingestbatch WHERE id = %s FOR UPDATE SKIP LOCKED", [batch_id]
            )
            if cursor.fetchone():
                return
        time.sleep(0.05)
    raise TimeoutError(f"batch {batch_id} still locked after {timeout}s")


def test_a_worker_killed_anywhere_in_a_batch_leaves_nothing_and_the_batch_is_applied_once(
    client, catalog
):
    # given a batch of receipts and orders, each of its rows slowed down so that its
    # transaction lasts a while, and workers that do not give up on it after a few deaths
    events = 150
    feed = [
        received("AB"[i % 2], 3, event_id=f"kill-{i}")
        if i % 3
        else order_created(f"kill-o-{i}", {"AB"[i % 2]: 1}, event_id=f"kill-{i}")
        for i in range(events)
    ]
    _, token = source_make()
    env = subprocess_env(INGEST_MAX_ATTEMPTS="50")
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    orders = len(range(0, events, 3))
    # Kill points, in rows written so far: before any, among the keys, among the orders, among
    # the ledger rows, after every ledger row (only stock levels left), then random ones.
    after_ledger = 2 * events + orders
    kill_points = [0, events // 2, events + orders // 2, events + orders + events // 2]
    kill_points += [after_ledger] + [rng.randrange(0, after_ledger + 1) for _ in range(4)]
    with rows_written_counted(seconds_per_row=0.004) as rows_written:
        batch_id = post(client, token, json_body(feed)).json()["batch_id"]
        for attempt, kill_at in enumerate(kill_points, start=1):
            rows_written(reset=True)
            # when a worker takes the batch and is killed (SIGKILL) after `kill_at` rows
            with ingest_worker(env=dict(env), log_name="worker-killed") as doomed:
                deadline = time.monotonic() + 120
                while (
                    IngestBatch.objects.get(pk=batch_id).attempts < attempt
                    or rows_written() < kill_at
                ):
                    assert doomed.poll() is None, "the worker exited by itself"
                    assert time.monotonic() < deadline, (
                        f"never reached {kill_at} rows (seed {seed})"
                    )
                    time.sleep(0.005)
                stop_process(doomed, sig=signal.SIGKILL)
            # then nothing of the batch is kept: no key, no ledger row, no stock
            batch_unlocked_wait(batch_id)
            context = f"killed after {kill_at} rows (seed {seed})"
            assert IngestBatch.objects.get(pk=batch_id).status != BatchStatus.DONE, context
            assert Movement.objects.count() == 0, context
            assert ProcessedEvent.objects.count() == 0, context
            assert Order.objects.count() == 0, context
            assert stock() == {}, context
        # and a worker left alone applies it, once, in full
        rows_written(reset=True)
        with ingest_worker(env=dict(env), log_name="worker-after-kills"):
            (batch,) = wait_done([batch_id], timeout=180)
        total_rows = rows_written()
    assert after_ledger < total_rows, "no kill came after the last ledger row"
    assert (batch.applied, batch.duplicates, batch.rejected) == (events, 0, 0)
    assert batch.attempts == len(kill_points) + 1
    receipts = [i for i in range(events) if i % 3]
    assert Movement.objects.filter(kind=MovementKind.RECEIVED).count() == len(receipts)
    assert Order.objects.count() == events - len(receipts)
    for sku, parity in (("A", 0), ("B", 1)):
        received_qty = sum(3 for i in receipts if i % 2 == parity)
        ordered = sum(1 for i in range(events) if not i % 3 and i % 2 == parity)
        assert stock()[("north", sku)] == (received_qty, ordered)
    assert_ledger_ok()


def log_wait(process, *texts: str, timeout: float = 60) -> None:
    """Wait until the child's log (var/test-logs) says one of `texts`."""
    path = Path(process.log_file.name)
    deadline = time.monotonic() + timeout
    while not any(text in path.read_text(errors="replace") for text in texts):
        assert process.poll() is None, f"the process exited; its log:\n{path.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"{path.name} never said any of {texts}"
        time.sleep(0.2)


def test_redis_down_while_feeds_arrive_every_batch_answered_202_is_applied(
    client, catalog, settings
):
    # given the API and a worker on a Redis of their own, the worker up and applying
    port = free_port()
    redis_url = f"redis://127.0.0.1:{port}/1"
    settings.RQ_QUEUES = {
        name: {**cfg, "URL": redis_url} for name, cfg in settings.RQ_QUEUES.items()
    }
    _, token = source_make()
    server = RedisServer(port)
    server.start()
    try:
        with ingest_worker(env=subprocess_env(REDIS_URL=redis_url)) as worker:
            first = post(client, token, large_feed(100, "before"))
            assert first.status_code == 202
            wait_done([first.json()["batch_id"]])

            # when Redis stops while feeds keep arriving, and the worker's sweeper keeps trying
            server.stop()
            during = [post(client, token, large_feed(100, f"down-{n}")) for n in range(5)]
            # (a sweep ran in the outage: it found Redis away, or could not enqueue a batch)
            log_wait(worker, "ingest sweep skipped", "stays queued for the sweeper")

            # then every feed is accepted and stored all the same, and the worker stays up
            assert [answer.status_code for answer in during] == [202] * 5
            accepted = [first.json()["batch_id"]] + [a.json()["batch_id"] for a in during]
            assert IngestBatch.objects.count() == 6
            assert worker.poll() is None, "the worker died in the outage"

            # and once Redis is back, that same worker applies every batch answered 202
            server.start()
            batches = wait_done(accepted, timeout=180)
            assert worker.poll() is None
    finally:
        server.stop()
    assert sum(batch.applied for batch in batches) == 600
    assert Movement.objects.count() == 600
    assert_ledger_ok()


def test_database_unreachable_answers_503_in_json_and_keeps_nothing(catalog):
    # given the web process with a database that does not answer
    import json
    import urllib.error
    import urllib.request

    from tests.processes import daphne_server

    _, token = source_make()
    dead_db = f"postgres://postgres@127.0.0.1:{free_port()}/nowhere"
    with daphne_server(env=subprocess_env(DATABASE_URL=dead_db)) as web:
        request = urllib.request.Request(  # noqa: S310 (local URL)
            f"{web.base_url}{URL}",
            data=json_body([received("A", 1)]).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        # when a feed is pushed
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(request, timeout=30)  # noqa: S310 (local URL)
    # then the producer is told to retry, in JSON, and nothing was stored
    assert answer.value.code == 503
    assert "retry" in json.loads(answer.value.read())["detail"]
    assert IngestBatch.objects.count() == 0


def test_a_batch_that_keeps_failing_ends_done_with_dead_letters_after_the_cap(client, catalog):
    # given a batch whose processing raises every time, and a worker that gives up after 3
    _, token = source_make()
    env = subprocess_env(INGEST_MAX_ATTEMPTS="3")
    with poison_event("poison-1"), ingest_worker(env=env, log_name="poison-worker"):
        body = json_body([received("A", 5), received("B", 7, event_id="poison-1")])
        # when it is pushed
        response = post(client, token, body)
        assert response.status_code == 202
        batch_id = response.json()["batch_id"]
        # then it is retried up to the cap, then done: every event a dead letter, none applied
        (batch,) = wait_done([batch_id], timeout=60)
        assert (batch.attempts, batch.applied, batch.rejected) == (3, 0, 2)
        letters = DeadLetter.objects.filter(batch_id=batch_id).order_by("index")
        assert [letter.reason_code for letter in letters] == ["processing_failed"] * 2
        assert "poisoned event poison-1" in letters[0].reason
        assert StockLevel.objects.count() == 0
        report = client.get(
            f"/api/ingest/batches/{batch_id}", headers={"Authorization": f"Bearer {token}"}
        ).json()
        assert report["accepted"] == report["rejected"] + report["applied"] + report["pending"]
        assert report["pending"] == 0
        time.sleep(2)  # the sweeper leaves a done batch alone
        batch.refresh_from_db()
        assert batch.attempts == 3
    # and once the cause is gone, replaying the dead letters applies them
    actor = get_user_model().objects.create_user("oncall")
    summary = dead_letters_replay(dead_letter_ids=[letter.pk for letter in letters], actor=actor)
    assert summary.applied == 2
    assert stock() == {("north", "A"): (5, 0), ("north", "B"): (7, 0)}
    batch.refresh_from_db()
    assert (batch.applied, batch.rejected) == (2, 0)
    assert_ledger_ok()


def test_a_batch_whose_worker_dies_every_time_ends_done_with_dead_letters_after_the_cap(
    client, catalog
):
    # given a batch that is in the middle of being applied for a while at every attempt, and
    # workers that give up after 2 attempts
    _, token = source_make()
    env = subprocess_env(INGEST_MAX_ATTEMPTS="2")
    with slow_event("fatal-1", seconds=1):
        body = json_body([received("A", 5), received("B", 7, event_id="fatal-1")])
        batch_id = post(client, token, body).json()["batch_id"]
        # when its worker is killed in the middle of it, twice
        for attempt in (1, 2):
            with ingest_worker(env=dict(env), log_name=f"worker-dies-{attempt}") as doomed:
                deadline = time.monotonic() + 30
                while IngestBatch.objects.get(pk=batch_id).attempts < attempt:
                    assert time.monotonic() < deadline, f"attempt {attempt} never started"
                    time.sleep(0.02)
                time.sleep(0.2)  # inside the batch's transaction, in the slow trigger
                stop_process(doomed, sig=signal.SIGKILL)
            assert IngestBatch.objects.get(pk=batch_id).status != BatchStatus.DONE
        # then the next worker does not start it a third time: it ends done, every event a
        # dead letter saying why, nothing applied, and the worker stays up for other batches
        with ingest_worker(env=dict(env), log_name="worker-after-deaths") as survivor:
            (batch,) = wait_done([batch_id], timeout=60)
            other = post(client, token, json_body([received("A", 1, event_id="after-1")]))
            wait_done([other.json()["batch_id"]], timeout=60)
            assert survivor.poll() is None
    assert (batch.attempts, batch.applied, batch.rejected) == (3, 0, 2)
    letters = DeadLetter.objects.filter(batch_id=batch_id).order_by("index")
    assert [letter.reason_code for letter in letters] == ["processing_failed"] * 2
    assert "started 2 times and never finished" in letters[0].reason
    assert stock() == {("north", "A"): (1, 0)}
    assert_ledger_ok()


@contextmanager
def hung_redis():
    """A TCP server that accepts connections and never answers: a hung Redis. Yields its URL."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(50)
    accepted = []
    stop = threading.Event()

    def accept_forever():
        listener.settimeout(0.2)
        while not stop.is_set():
            with suppress(TimeoutError):
                accepted.append(listener.accept()[0])

    thread = threading.Thread(target=accept_forever, daemon=True)
    thread.start()
    try:
        yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        listener.close()


def test_a_hung_redis_delays_a_post_by_seconds_and_the_batch_waits_in_the_database(catalog):
    # given the web process whose Redis accepts connections and never answers
    _, token = source_make()
    with hung_redis() as redis_url, daphne_server(env=subprocess_env(REDIS_URL=redis_url)) as web:
        request = urllib.request.Request(  # noqa: S310 (local URL)
            f"{web.base_url}{URL}",
            data=json_body([received("A", 5)]).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        # when a feed pushes a batch
        started = time.monotonic()
        with urllib.request.urlopen(request, timeout=20) as response:  # noqa: S310
            status, answer = response.status, json.loads(response.read())
        elapsed = time.monotonic() - started
    # then it is accepted within a few seconds (rate limit and enqueue each time out)
    assert status == 202
    assert elapsed < 8
    # and the batch is kept, queued, for the sweeper
    assert IngestBatch.objects.get(pk=answer["batch_id"]).status == BatchStatus.QUEUED
