"""The accept side of ingest alone: how fast the web process takes 1,000-event batches.

    REDIS_URL=redis://127.0.0.1:6379/1 flock /tmp/bench.lock .venv/bin/python \
        bench/ingest_accept.py [--events 200000] [--batch-size 1000] [--clients 2]

Through the real pieces of the POST path: Daphne, the HTTP API, Redis (rate limit, enqueue) and
PostgreSQL (a fresh database, BENCH_DATABASE_URL). No worker runs, so the batches stay queued and
only accepting is timed. Each client thread keeps one HTTP/1.1 connection open, as a producer
would. Prints events/s accepted, the per-POST latency the clients saw (p50/p99), and the CPU
the Daphne process and the PostgreSQL server spent per POST (the PostgreSQL figure is the whole
server's, other databases included: meaningful on a quiet machine only).
"""

import argparse
import http.client
import os
import statistics
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import ingest_stack

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _process_cpu_seconds(pid: int, *, children: bool = False, kernel: bool = True) -> float:
    """utime + stime of a process (and of its waited-for children: backends that exited)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + (int(fields[12]) if kernel else 0)
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLOCK_TICKS


def _pids(match) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if match(args):
            found.append(int(entry.name))
    return found


def web_pid(port: int) -> int:
    (pid,) = _pids(lambda args: b"daphne" in args and str(port).encode() in args)
    return pid


def postgres_cpu_seconds() -> float | None:
    """CPU of the local PostgreSQL server: live processes plus the backends that exited."""
    try:
        backends = _pids(lambda args: args[0].startswith(b"postgres: "))
        postmasters = _pids(lambda args: args[0].endswith(b"/postgres") and b"-D" in args)
        total = sum(_process_cpu_seconds(pid) for pid in backends)
        return total + sum(_process_cpu_seconds(pid, children=True) for pid in postmasters)
    except (OSError, ValueError):
        return None  # not a local server, or it changed under us


def run(*, events: int, batch_size: int, clients: int) -> dict:
    ingest_stack.database_recreate()
    from django.db import connection
    from ingest_common import catalog_ensure, simulator_batches, source_token

    from ingest.models import IngestBatch

    catalog_ensure()
    token = source_token()
    bodies = [body.encode() for body in simulator_batches(total=events, batch_size=batch_size)]
    connection.close()
    import django_rq

    django_rq.get_connection("ingest").flushdb()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    latencies: list[float] = []
    with ingest_stack.stack(workers=0) as base_url:
        url = urlsplit(base_url)
        pid = web_pid(url.port)
        queue = list(reversed(bodies))
        lock = threading.Lock()

        def client() -> None:
            session = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
            own = []
            while True:
                with lock:
                    if not queue:
                        break
                    body = queue.pop()
                posted = time.perf_counter()
                session.request("POST", "/api/ingest/events", body=body, headers=headers)
                answer = session.getresponse()
                answer.read()
                own.append(time.perf_counter() - posted)
                if answer.status != 202:
                    raise RuntimeError(f"POST answered {answer.status}")
            session.close()
            with lock:
                latencies.extend(own)

        web_cpu_before, pg_cpu_before = _process_cpu_seconds(pid), postgres_cpu_seconds()
        web_user_before = _process_cpu_seconds(pid, kernel=False)
        started = time.perf_counter()
        ingest_stack.concurrently(client, clients)
        elapsed = time.perf_counter() - started
        web_cpu = _process_cpu_seconds(pid) - web_cpu_before
        web_user = _process_cpu_seconds(pid, kernel=False) - web_user_before
        pg_cpu_after = postgres_cpu_seconds()
    pg_cpu = None if pg_cpu_before is None or pg_cpu_after is None else pg_cpu_after - pg_cpu_before
    posts = len(bodies)
    stored = IngestBatch.objects.count()
    if stored != posts or len(latencies) != posts:
        raise RuntimeError(f"{posts} POSTs, {len(latencies)} answered, {stored} batches stored")
    latencies.sort()
    return {
        "events": events,
        "posts": posts,
        "body_kib": statistics.mean(len(body) for body in bodies) / 1024,
        "elapsed_s": elapsed,
        "events_per_s": events / elapsed,
        "p50_ms": latencies[posts // 2] * 1000,
        "p99_ms": latencies[min(posts - 1, int(posts * 0.99))] * 1000,
        "web_cpu_ms": web_cpu / posts * 1000,
        "web_kernel_ms": (web_cpu - web_user) / posts * 1000,
        "pg_cpu_ms": None if pg_cpu is None else pg_cpu / posts * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=2, help="concurrent POSTing threads")
    args = parser.parse_args()
    result = run(events=args.events, batch_size=args.batch_size, clients=args.clients)
    pg_cpu = "n/a" if result["pg_cpu_ms"] is None else f"{result['pg_cpu_ms']:.1f} ms"
    print(
        "{events:,} events in {posts} POSTs of {body_kib:.0f} KiB accepted in {elapsed_s:.1f} s: "
        "{events_per_s:,.0f} events/s; per POST p50 {p50_ms:.1f} ms, p99 {p99_ms:.1f} ms; "
        "Daphne CPU {web_cpu_ms:.1f} ms per POST ({web_kernel_ms:.1f} in the kernel), ".format(
            **result
        )
        + f"PostgreSQL CPU {pg_cpu} per POST; load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )


if __name__ == "__main__":
    main()
