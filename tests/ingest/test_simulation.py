"""The feed simulator: what it generates, and the command against the real web and worker."""

import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import django_rq
import pytest

from ingest.models import FeedSource, IngestBatch
from ingest.simulation import FeedSimulator
from inventory_ops.models import Movement
from tests.builders import site_make, sku_make
from tests.processes import daphne_server, manage_py, running, subprocess_env


def wait_until_all_done(timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while IngestBatch.objects.exclude(status="done").exists():
        assert time.monotonic() < deadline, "batches still not done"
        time.sleep(0.2)


def run_simulation(seconds: int, rate: int) -> Counter:
    simulator = FeedSimulator(sites=["a", "b"], skus=["X", "Y", "Z"], seed=7)
    start = datetime(2026, 11, 23, tzinfo=UTC)
    kinds = Counter()
    for second in range(seconds):
        for role, events in simulator.tick(
            now=start + timedelta(seconds=second), count=rate
        ).items():
            kinds.update((role, event.get("type")) for event in events)
    return kinds


def test_simulator_makes_every_kind_of_traffic():
    kinds = run_simulation(seconds=600, rate=20)
    types = {kind for _, kind in kinds}
    assert {
        "order.created",
        "order.dispatched",
        "order.delivered",
        "order.cancelled",
        "order.returned",
        "stock.received",
        "stock.transferred",
        "stock.adjusted",
        "stock.counted",
        "stock.snapshot",
        "stock.teleported",  # a malformed one
    } <= types
    assert kinds[("courier", "order.dispatched")] > 0.8 * kinds[("shop", "order.created")] * 0.9
    assert kinds[("courier", "order.created")] == 0


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_simulate_feeds_pushes_through_the_real_api(postgres_only):
    # given the web, a worker and a catalog
    django_rq.get_connection("ingest").flushdb()
    site_make("north")
    site_make("south")
    for code in ("A", "B", "C"):
        sku_make(code)
    env = subprocess_env()
    worker = manage_py("rqworker", "ingest", "--worker-class", "ingest.worker.IngestWorker")
    with daphne_server(env=env) as web, running(worker, env=env, log_name="sim-worker"):
        # when the simulator runs for a few seconds against it
        simulate = ["--rate", "100", "--duration", "6", "--url", web.base_url, "--seed", "3"]
        with running(manage_py("simulate_feeds", *simulate), env=env, log_name="simulator") as sim:
            sim.wait(timeout=60)
        wait_until_all_done()
    # then its sources pushed batches that were applied
    assert set(FeedSource.objects.values_list("name", flat=True)) >= {"simulator", "simulator-wms"}
    batches = IngestBatch.objects.all()
    assert batches.count() >= 6
    assert sum(batch.applied for batch in batches) > 300
    assert Movement.objects.filter(cause_ref__startswith="simulator").exists()
