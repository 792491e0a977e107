"""`GET /api/kpis` p50 and p99 for every scope and window while ingest runs at its sustained
maximum (issue 19), and the same reads on the same database once the writers are idle.

    REDIS_URL=redis://127.0.0.1:6379/1 flock /tmp/bench.lock \\
        .venv/bin/python bench/reads_under_load.py [--events 400000] [--workers 2] [--rounds 8]

The real stack of the ingest benchmarks (`ingest_stack.py`: a fresh PostgreSQL database
BENCH_DATABASE_URL, Daphne with `DEBUG=0`, `IngestWorker` processes). A separate process POSTs
the simulator's 1,000-event batches through `/api/ingest/events` with two connections as fast as
they are accepted, as `ingest_throughput.py` does, but keeping at most BACKLOG_MAX batches
waiting, so the workers always have work (ingest at its sustained maximum) while the web
process is not flooded with batches faster than they can be applied. Meanwhile this process
reads `/api/kpis` with a feed token over one keep-alive connection, every scope (all sites, then
each site) and every window in turn, for `--rounds` rounds, while the feed lasts (reads taken
after it ended are left out and counted). Then the same rounds with nothing writing. A request
is timed from sending it to reading the whole answer. ANALYZE runs every 10 s meanwhile, as
autovacuum would (`analyze_meanwhile`).
"""

import argparse
import http.client
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

if __name__ == "__main__" and "--post-from" in sys.argv:
    # The feed: a process of its own, so that its threads do not share our interpreter lock.
    pass
else:
    import ingest_stack  # (points DATABASE_URL at the benchmark database)

WINDOWS = ("1h", "24h", "7d", "30d")
# Batches waiting for the workers that the feed keeps (three per worker, 1,000 events each).
BACKLOG_MAX = 6


def feed(url: str, token: str, path: str, clients: int) -> None:
    """POST every line of `path` (a JSON body) with `clients` keep-alive connections, keeping
    at most BACKLOG_MAX batches waiting for the workers: they never wait for work (ingest at
    its sustained maximum) and the web process is not flooded past what they can apply."""
    import psycopg

    bodies = Path(path).read_text().splitlines()
    database = psycopg.connect(os.environ["DATABASE_URL"], autocommit=True)
    database_lock = threading.Lock()

    def backlog_full() -> bool:
        with database_lock:
            ((waiting,),) = database.execute(
                "SELECT count(*) FROM ingest_ingestbatch WHERE status <> 'done'"
            ).fetchall()
        return waiting >= BACKLOG_MAX

    lock = threading.Lock()
    parsed = urllib.parse.urlsplit(url)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def client() -> None:
        connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=120)
        while True:
            while backlog_full():
                time.sleep(0.01)
            with lock:
                if not bodies:
                    return
                body = bodies.pop()
            connection.request("POST", "/api/ingest/events", body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            if response.status != 202:
                print(f"feed: {response.status}", file=sys.stderr, flush=True)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def analyze_meanwhile(stop: threading.Event, every_s: float = 10) -> None:
    """ANALYZE every `every_s` seconds, as autovacuum would on a production server: this
    machine's PostgreSQL runs with autovacuum off (a CI setting), and on a never-analyzed
    ledger of 550,000 movements the planner walked a site's movements SKU by SKU (one read of a
    site took 300-850 ms instead of 1-5 ms)."""
    import psycopg

    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as database:
        while not stop.wait(every_s):
            database.execute("ANALYZE")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


class Reader:
    def __init__(self, base_url: str, token: str) -> None:
        parsed = urllib.parse.urlsplit(base_url)
        self.address = (parsed.hostname, parsed.port)
        self.connection = http.client.HTTPConnection(*self.address, timeout=60)
        self.headers = {"Authorization": f"Bearer {token}"}

    def reconnect(self) -> None:
        """A new connection: Daphne closes one left idle (while the backlog drains)."""
        self.connection.close()
        self.connection = http.client.HTTPConnection(*self.address, timeout=60)
        self.connection.connect()

    def read(self, site: str | None, window: str) -> float:
        query = urllib.parse.urlencode({"window": window, **({"site": site} if site else {})})
        started = time.perf_counter()
        self.connection.request("GET", f"/api/kpis?{query}", headers=self.headers)
        response = self.connection.getresponse()
        body = response.read()
        elapsed = time.perf_counter() - started
        if response.status != 200:
            raise RuntimeError(f"/api/kpis?{query}: {response.status} {body[:200]!r}")
        return elapsed


def backlog() -> int:
    from ingest.models import BatchStatus, IngestBatch

    return IngestBatch.objects.exclude(status=BatchStatus.DONE).count()


def applied_events() -> int:
    from django.db.models import Sum

    from ingest.models import IngestBatch

    return IngestBatch.objects.aggregate(total=Sum("applied"))["total"] or 0


def rounds_read(reader: Reader, scopes: list, rounds: int, *, busy=None) -> dict:
    """{(scope, window): [seconds]} of `rounds` rounds over every scope and window."""
    timings: dict = {(scope, window): [] for scope in scopes for window in WINDOWS}
    late = 0
    for _ in range(rounds):
        for scope in scopes:
            for window in WINDOWS:
                seconds = reader.read(scope, window)
                if busy is not None and not busy():
                    late += 1
                    continue
                timings[(scope, window)].append(seconds)
    if late:
        print(f"  {late} reads after the feed had ended, left out", flush=True)
    return timings


def report(label: str, timings: dict) -> None:
    every = [seconds for values in timings.values() for seconds in values]
    if not every:
        print(f"{label}: no reads", flush=True)
        return
    print(
        f"{label}: {len(every)} reads, p50 {percentile(every, 0.5) * 1000:.1f} ms, "
        f"p99 {percentile(every, 0.99) * 1000:.1f} ms, max {max(every) * 1000:.1f} ms; "
        f"load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    print("  scope      window   n   p50 ms   p99 ms", flush=True)
    for (scope, window), values in timings.items():
        if values:
            print(
                f"  {scope or 'all':10} {window:5} {len(values):4} "
                f"{percentile(values, 0.5) * 1000:8.1f} {percentile(values, 0.99) * 1000:8.1f}",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=400_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=2, help="POSTing connections")
    parser.add_argument("--rounds", type=int, default=8, help="rounds of every scope and window")
    parser.add_argument("--warmup", type=float, default=5, help="seconds of ingest before reads")
    args = parser.parse_args()

    ingest_stack.database_recreate()
    from django.db import connection
    from ingest_common import BENCH_SITES, catalog_ensure, simulator_batches, source_token

    catalog_ensure()
    token = source_token()
    bodies = simulator_batches(total=args.events, batch_size=args.batch_size)
    connection.close()
    import django_rq

    django_rq.get_connection("ingest").flushdb()
    scopes = [None, *BENCH_SITES]
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as bodies_file:
        bodies_file.write("\n".join(bodies))
    with ingest_stack.stack(workers=args.workers) as base_url:
        reader = Reader(base_url, token)
        analyzing = threading.Event()
        threading.Thread(target=analyze_meanwhile, args=(analyzing,), daemon=True).start()
        rounds_read(reader, scopes, 1)  # warm the connection and the caches
        print(f"load average before the feed {os.getloadavg()[0]:.1f}", flush=True)
        poster = subprocess.Popen(
            [
                *(sys.executable, __file__, "--post-from", bodies_file.name),
                *(base_url, token, str(args.clients)),
            ]
        )
        time.sleep(args.warmup)
        applied_before, started = applied_events(), time.perf_counter()
        busy = rounds_read(reader, scopes, args.rounds, busy=lambda: poster.poll() is None)
        applied_rate = (applied_events() - applied_before) / (time.perf_counter() - started)
        print(f"ingest while reading: {applied_rate:,.0f} events/s applied", flush=True)
        report(f"under ingest ({args.workers} workers)", busy)
        poster.wait()
        while backlog():
            time.sleep(0.5)
        from ledger.models import Movement

        print(f"{Movement.objects.count():,} movements", flush=True)
        from django.db import connection as database

        with database.cursor() as cursor:
            cursor.execute("ANALYZE")
        connection.close()
        time.sleep(2)
        reader.reconnect()
        report("idle writers", rounds_read(reader, scopes, args.rounds))
        analyzing.set()
    os.unlink(bodies_file.name)


if __name__ == "__main__":
    if "--post-from" in sys.argv:
        _, _, path, url, token, clients = sys.argv
        feed(url, token, path, int(clients))
    else:
        main()
