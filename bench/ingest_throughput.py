"""Sustained ingest throughput: events/s from the first POST until the last event is applied.

    flock /tmp/bench.lock .venv/bin/python bench/ingest_throughput.py [--events 200000]
        [--batch-size 1000] [--workers 1 2] [--stored]

Through the real pieces: Daphne, the HTTP API, Redis, `IngestWorker` processes, PostgreSQL (a
fresh database, BENCH_DATABASE_URL). Events are mixed as the simulator makes them. The same run
times a raw PostgreSQL COPY of as many ledger-like rows into a logged table, and prints our rate
as a fraction of it (and the rate into a TEMP table, which skips WAL, for comparison).

`--stored` times the workers alone: every batch is stored in the database first (as the API
stores it), then all their jobs are enqueued at once, and the clock runs from the first job
until the last batch is done.
"""

import argparse
import contextlib
import threading
import time
from datetime import UTC, datetime

import ingest_stack


def copy_baseline(rows: int, *, temporary: bool = False, rows_per_commit: int = 0) -> float:
    """Rows/s of a COPY of 5-column ledger rows with a unique event id, committed (once, or
    every `rows_per_commit` rows).

    The fraction is taken against an ordinary (logged) table, as the ledger is: it writes WAL
    and is fsynced at commit, as the machine's measured "physical ceiling for writing the ledger"
    (120,800 rows/s) was measured. A TEMP table skips WAL and is printed for comparison only:
    no durable ledger can be written at that rate (the figures up to 2026-11-24 01:20 UTC in
    bench/README.md were taken against it). In 1,000-row transactions, as the batches
    arrive, the same COPY runs at 130,000-190,000 rows/s here, close to that ceiling's figure;
    that rate is printed for comparison, and the fraction stays against the single COPY, the
    ceiling.
    """
    import psycopg

    table = "copy_bench" if temporary else "copy_bench_logged"
    with psycopg.connect(ingest_stack.BENCH_DATABASE_URL) as connection:
        connection.execute(f"DROP TABLE IF EXISTS {table}")
        connection.execute(
            f"CREATE {'TEMP ' if temporary else ''}TABLE {table} (event_id text UNIQUE, "
            "site_id bigint, sku_id bigint, on_hand_delta bigint, occurred_at timestamptz)"
        )
        connection.commit()
        now = datetime.now(UTC)
        step = rows_per_commit or rows
        started = time.perf_counter()
        for first in range(0, rows, step):
            with connection.cursor() as cursor, cursor.copy(f"COPY {table} FROM STDIN") as copy:
                for number in range(first, min(rows, first + step)):
                    copy.write_row((f"bench-{number}", number % 8, number % 500, 1, now))
            connection.commit()
        elapsed = time.perf_counter() - started
        connection.execute(f"DROP TABLE {table}")
        connection.commit()
        return rows / elapsed


def batches_store(token: str, bodies: list[str]) -> list:
    """Store the batches as the API would, without enqueueing their jobs yet."""
    from django.utils import timezone

    from ingest.models import FeedSource, IngestBatch
    from ingest.parsing import events_parse
    from ingest.sources import token_hash

    source = FeedSource.objects.get(token_hash=token_hash(token))
    batches = [
        IngestBatch(
            source=source,
            body_format="json",
            raw_body=body,
            accepted=len(events_parse(body_format="json", text=body)),
            received_at=timezone.now(),
        )
        for body in bodies
    ]
    IngestBatch.objects.bulk_create(batches)
    return [batch.pk for batch in batches]


def run(
    *,
    events: int,
    batch_size: int,
    workers: int,
    clients: int,
    stored: bool,
    slo_counters: bool = True,
    during=contextlib.nullcontext,
    template: bool = False,
) -> dict:
    """One run; with `template`, the database is a copy of the one the first such run left
    migrated with its catalog (ingest_stack.template_save), not migrated again."""
    from_template = template and ingest_stack.database_from_template()
    if not from_template:
        ingest_stack.database_recreate()
    from django.db import connection
    from ingest_common import catalog_ensure, simulator_batches, source_token

    from ingest.models import BatchStatus, HeldEvent, IngestBatch

    if not from_template:
        catalog_ensure()
        if template:
            ingest_stack.template_save()
    token = source_token()
    bodies = simulator_batches(total=events, batch_size=batch_size, seed=workers)
    connection.close()
    import django_rq

    django_rq.get_connection("ingest").flushdb()
    stored_ids = batches_store(token, bodies) if stored else []
    with ingest_stack.stack(workers=workers, slo_counters=slo_counters) as base_url:
        queue = list(bodies)
        lock = threading.Lock()

        def client() -> None:
            while True:
                with lock:
                    if not queue:
                        return
                    body = queue.pop(0)
                ingest_stack.post(base_url, token, body)

        timed = during()
        timed.__enter__()
        started = time.perf_counter()
        if stored:
            from ingest.receiving import batch_enqueue

            for batch_id in stored_ids:
                batch_enqueue(batch_id=batch_id)
            queue.clear()
        ingest_stack.concurrently(client, clients)
        posted = time.perf_counter() - started
        # Applied means applied: held events (an order event that reached a worker before
        # its order, created by a racing worker) count until they are released.
        while (
            IngestBatch.objects.exclude(status=BatchStatus.DONE).exists()
            or HeldEvent.objects.exists()
        ) and time.perf_counter() - started < 3600:
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        timed.__exit__(None, None, None)
    totals = IngestBatch.objects.values_list("applied", "duplicates", "rejected", "held")
    counts = [sum(column) for column in zip(*totals, strict=True)]
    from ledger.models import Movement
    from slos.models import SloCount

    return {
        "workers": workers,
        "events": events,
        "posted_s": posted,
        "elapsed_s": elapsed,
        "events_per_s": events / elapsed,
        "applied": counts[0],
        "duplicates": counts[1],
        "rejected": counts[2],
        "held": counts[3],
        "movements": Movement.objects.count(),
        "slo_rows": SloCount.objects.count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--clients", type=int, default=2, help="concurrent POSTing threads")
    parser.add_argument(
        "--stored", action="store_true", help="store every batch first: time the workers alone"
    )
    args = parser.parse_args()
    rates, movement_rates = [], []
    for workers in args.workers:
        result = run(
            events=args.events,
            batch_size=args.batch_size,
            workers=workers,
            clients=args.clients,
            stored=args.stored,
        )
        print(
            "{workers} worker(s): {events:,} events in {elapsed_s:.1f} s (all POSTed or "
            "enqueued after {posted_s:.1f} s): {events_per_s:,.0f} events/s; applied {applied:,}, "
            "duplicates "
            "{duplicates:,}, rejected {rejected:,}, held {held:,}; {movements:,} movements".format(
                **result
            ),
            flush=True,
        )
        rates.append(result["events_per_s"])
        movement_rates.append(result["movements"] / result["elapsed_s"])
    copy_rate = copy_baseline(args.events)
    temporary_rate = copy_baseline(args.events, temporary=True)
    batched_rate = copy_baseline(args.events, rows_per_commit=args.batch_size)
    print(
        f"raw COPY of {args.events:,} ledger rows: {copy_rate:,.0f} rows/s "
        f"(into a TEMP table, no WAL: {temporary_rate:,.0f} rows/s, "
        f"fractions {', '.join(f'{rate / temporary_rate:.3f}' for rate in rates)}; "
        f"committed every {args.batch_size:,} rows: {batched_rate:,.0f} rows/s, "
        f"fractions {', '.join(f'{rate / batched_rate:.3f}' for rate in rates)})"
    )
    for workers, rate, movement_rate in zip(args.workers, rates, movement_rates, strict=True):
        print(
            f"{workers} worker(s): {rate / copy_rate:.3f} of the raw COPY rate (events/s over "
            f"rows/s; the ledger rows we wrote, {movement_rate:,.0f}/s, are "
            f"{movement_rate / copy_rate:.3f} of it)"
        )


if __name__ == "__main__":
    main()
