"""The product's reliability statement, measured: the real stack (its own PostgreSQL and Redis,
the web process and two workers from their Procfile lines) fed through the HTTP API while the
routine faults of a production happen to it one after another:

1. a worker is killed outright (SIGKILL) and its supervisor starts it again;
2. Redis is killed and comes back empty;
3. PostgreSQL stops at once (`-m immediate`) and starts again;
4. the web process restarts.

A producer keeps sending batches (receipts and whole orders) and, as a producer should,
resends a batch answered 503 or not answered at all, with the same event ids. After each fault
and at the end: every batch answered 202 is `done` with nothing rejected, the stock equals an
independent ledger kept here (every event applied exactly once), `check_ledger` passes, the KPIs
equal those of a fresh `rebuild_kpis`, an open dashboard is live again and shows the same stock,
and no answer of the whole run was a 500. The figures are printed (`-s` shows them) and are
those of docs/reliability.md.
"""

import itertools
import re
import signal
import threading
import time
from collections import Counter, defaultdict

import pytest

from tests.faults.dashboard_client import LiveDashboard
from tests.faults.producer import Producer, batches_left
from tests.faults.stack import SITES, Stack

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(900)]

KPI_WINDOWS = ("1h", "24h")
# KPI keys that move with the clock between two reads, not with the data.
CLOCK_KEYS = {"as_of", "feeds"}


class Prober:
    """Asks for a page and the JSON API twice a second, as people and scripts do during a
    fault; every status is kept."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.statuses: Counter = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prober", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            for path, headers in (("/", self.stack.cookie), ("/api/stock", None)):
                self.statuses[self.stack.get(path, headers=headers, timeout=30).status] += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        assert not self._thread.is_alive(), "the page reader is stuck"


def site_on_hand_shown(frame: dict) -> dict[str, int]:
    return {
        site: int(value)
        for site, value in re.findall(r'data-site-on-hand="([^"]+)">(-?\d+)<', frame["html"])
    }


def kpis_read(stack: Stack) -> dict:
    answers = {}
    for site, window in itertools.product((None, *SITES), KPI_WINDOWS):
        query = f"?window={window}" + (f"&site={site}" if site else "")
        answer = stack.get(f"/api/kpis{query}")
        assert answer.status == 200, answer
        answers[(site, window)] = {k: v for k, v in answer.json().items() if k not in CLOCK_KEYS}
    return answers


def consistency_check(stack: Stack, producer: Producer, dashboard: LiveDashboard) -> None:
    """Everything accepted is applied exactly once, and every reader says the same."""
    pending = stack.sql(
        "SELECT status, count(*) FROM ingest_ingestbatch WHERE id = ANY(%s::uuid[]) "
        "AND status <> 'done' GROUP BY status",
        producer.batches,
    )
    assert pending == [], f"batches answered 202 but not done: {pending}"
    ((rejected,),) = stack.sql(
        "SELECT coalesce(sum(rejected), 0) FROM ingest_ingestbatch WHERE id = ANY(%s::uuid[])",
        producer.batches,
    )
    assert rejected == 0
    stock = {key: on_hand for key, (on_hand, _) in stack.stock().items()}
    assert stock == dict(producer.expected)
    assert "ledger OK" in stack.manage("check_ledger")
    before = kpis_read(stack)
    stack.manage("rebuild_kpis")
    assert kpis_read(stack) == before
    # the dashboard shows the same stock as the ledger
    latest = dashboard.views_since(0)[-1]
    assert site_on_hand_shown(latest) == producer.site_on_hand()


def recovery_measure(
    stack: Stack, producer: Producer, dashboard: LiveDashboard, back_at: float
) -> tuple[float, float]:
    """From `back_at` (the fault over: the dependency back, the worker killed), seconds until
    the product works again: the first batch accepted since is applied and the dashboard shows
    a view computed since; and seconds until it has caught up: every accepted batch applied
    and the dashboard showing the resulting stock."""
    since = [
        b for b, at in zip(producer.batches, producer.accepted_at, strict=True) if at >= back_at
    ]
    first = since[:1] or producer.batches[-1:]
    stack.wait_for(
        lambda: batches_left(stack, first) == 0 and dashboard.views_since(back_at),
        "a new batch applied and the dashboard live",
        timeout=120,
        interval=0.1,
    )
    recovery = time.monotonic() - back_at
    wanted = producer.site_on_hand()

    def caught_up() -> bool:
        views = dashboard.views_since(back_at)
        return (
            batches_left(stack, producer.batches) == 0
            and bool(views)
            and site_on_hand_shown(views[-1]) == wanted
        )

    try:
        stack.wait_for(caught_up, "the stack to catch up", timeout=120, interval=0.1)
    except TimeoutError:
        views = dashboard.views_since(back_at)
        left = stack.sql(
            "SELECT id, status, attempts, applied, rejected, held FROM ingest_ingestbatch "
            "WHERE id = ANY(%s::uuid[]) AND status <> 'done'",
            producer.batches,
        )
        shown = site_on_hand_shown(views[-1]) if views else None
        stock = defaultdict(int)
        for (site, _), (on_hand, _) in stack.stock().items():
            stock[site] += on_hand
        timing = views[-1].get("timing") if views else None
        letters = stack.sql(
            "SELECT reason_code, left(reason, 120), count(*) FROM ingest_deadletter "
            "GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 5"
        )
        raise AssertionError(
            f"not caught up: batches not done {left}; dashboard shows {shown}, the ledger "
            f"{wanted}, the stock levels {dict(stock)}; {len(views)} views since, the last "
            f"computed {timing}, now {time.time()}; dead letters {letters}; client errors "
            f"{dashboard.errors[-3:]}"
        ) from None
    return recovery, time.monotonic() - back_at


def test_routine_faults_while_events_flow_lose_nothing_and_apply_nothing_twice():
    stack = Stack(
        name="fault-suite",
        INGEST_SWEEP_SECONDS="1",
        INGEST_SWEEP_GRACE_SECONDS="3",
        WORKER_HEARTBEAT_SECONDS="1",
        DASHBOARD_REFRESH_S="2",
    )
    try:
        run_faults(stack)
    finally:
        stack.close()


def run_faults(stack: Stack) -> None:
    started = time.monotonic()
    stack.web_start()
    stack.worker_start("worker-1")
    stack.worker_start("worker-2")
    session = stack.session_make("floor-tv", role="managers")
    stack.cookie = {"Cookie": f"sessionid={session}"}
    dashboard = LiveDashboard(stack.base_url, session)
    producer, prober = Producer(stack), Prober(stack)
    producer.start()
    recoveries: dict[str, float] = {}
    catch_ups: dict[str, float] = {}

    def flow(seconds: float) -> None:
        time.sleep(seconds)

    def after(fault: str, back_at: float) -> None:
        flow(2)  # events keep flowing once it is back
        producer.pause()
        recoveries[fault], catch_ups[fault] = recovery_measure(stack, producer, dashboard, back_at)
        consistency_check(stack, producer, dashboard)
        producer.resume()

    try:
        flow(4)
        # 1. a worker killed outright; its supervisor starts it again
        stack.stop("worker-1", sig=signal.SIGKILL)
        back_at = time.monotonic()
        stack.start("worker-1", "worker")  # not waited for: the other worker carries on
        after("worker SIGKILL", back_at)

        # 2. Redis killed, back empty 3 s later
        flow(3)
        stack.redis.kill()
        flow(3)
        stack.redis.start()
        after("Redis restart", time.monotonic())

        # 3. PostgreSQL stopped at once, started 3 s later
        flow(3)
        stack.pg.stop("immediate")
        flow(3)
        stack.pg.start()
        after("PostgreSQL restart", time.monotonic())

        # 4. the web process restarted
        flow(3)
        stack.stop("web")
        stack.web_start()
        after("web restart", time.monotonic())
    finally:
        producer.stop()
        prober.stop()
        dashboard.close()

    movements = stack.sql(
        "SELECT cause_ref, count(*) FROM inventory_ops_movement GROUP BY cause_ref, site_id, "
        "sku_id, kind"
    )
    applied = {ref.split(":", 1)[1] for ref, _ in movements}
    lost = len(producer.moving_events - applied)
    applied_twice = sum(1 for _, count in movements if count > 1)
    statuses = producer.statuses + prober.statuses
    longest = max(recoveries.values())
    print(  # the figures of docs/reliability.md
        f"\nfaults injected: {len(recoveries)} ({', '.join(recoveries)})"
        f"\nbatches accepted: {len(producer.batches)}"
        f"\nevents accepted: {producer.events_accepted}"
        f"\nlost: {lost}"
        f"\napplied twice: {applied_twice}"
        f"\nrecovery seconds (a new batch applied, the dashboard live): "
        + ", ".join(f"{fault} {seconds:.1f}" for fault, seconds in recoveries.items())
        + "\ncaught up seconds (every batch applied, the dashboard showing it): "
        + ", ".join(f"{fault} {seconds:.1f}" for fault, seconds in catch_ups.items())
        + f"\nlongest recovery: {longest:.1f} s"
        f"\nanswers: {dict(sorted(statuses.items(), key=str))}"
        f"\nrun time: {time.monotonic() - started:.0f} s"
    )
    assert (lost, applied_twice) == (0, 0)
    assert 500 not in statuses
    assert all(status in (200, 202, 503, None) for status in statuses), statuses
    assert dashboard.views_since(0), "the dashboard never went live"
