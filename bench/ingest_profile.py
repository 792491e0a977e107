"""Profile one worker applying simulator batches in process: where the time goes.

DATABASE_URL=... python bench/ingest_profile.py [--batches 20] [--size 1000] [--group 10000]

All batches are stored first, then applied in order as the worker's jobs would: with `--group`,
a job also takes queued batches up to that many events (0: each batch alone), and the jobs
of batches already applied find them done.
"""

import argparse
import cProfile
import pstats
import re
import time
from collections import defaultdict
from contextlib import ExitStack

from django.db import connection
from ingest_common import catalog_ensure, simulator_batches, source_token

from ingest.models import FeedSource
from ingest.parsing import events_parse
from ingest.processing import batch_process
from ingest.receiving import batch_receive


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--sort", default="cumulative")
    parser.add_argument("--top", type=int, default=30, help="0: time only, no profile")
    parser.add_argument("--group", type=int, default=0, help="events per group (0: none)")
    parser.add_argument(
        "--statements", action="store_true", help="wall time per SQL statement (no profile)"
    )
    args = parser.parse_args()
    catalog_ensure()
    source_token()
    source = FeedSource.objects.get(name="bench")
    total = args.batches * args.size
    bodies = simulator_batches(total=total, batch_size=args.size, seed=int(time.time()))
    ids = []
    for body in bodies:
        count = len(events_parse(body_format="json", text=body))
        batch = batch_receive(source=source, body_format="json", raw_body=body, accepted=count)
        ids.append(batch.pk)
    profile = cProfile.Profile()
    timings = StatementTimings()
    with ExitStack() as stack:
        if args.statements:
            stack.enter_context(connection.execute_wrapper(timings))
        started = time.perf_counter()
        if args.top and not args.statements:
            profile.enable()
        for batch_id in ids:
            batch_process(batch_id=batch_id, group_events=args.group)
        profile.disable()
        elapsed = time.perf_counter() - started
    events = args.batches * args.size
    print(f"{events} events in {elapsed:.2f} s: {events / elapsed:,.0f} events/s (one process)")
    if args.statements:
        timings.report(elapsed)
    elif args.top:
        pstats.Stats(profile).sort_stats(args.sort).print_stats(args.top)


class StatementTimings:
    """Wall time of each kind of statement (client-side quoting included; COPY and COMMIT are
    not statements Django runs, so they fall in the rest)."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def __call__(self, execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            key = re.sub(r"\s+", " ", sql)[:110]
            self.seconds[key] += time.perf_counter() - started
            self.calls[key] += 1

    def report(self, elapsed: float) -> None:
        total = sum(self.seconds.values())
        print(f"statements: {total:.2f} s of {elapsed:.2f} s; the rest is Python, COPY, commits")
        for key, seconds in sorted(self.seconds.items(), key=lambda kv: -kv[1])[:25]:
            print(f"{seconds * 1000:8.0f} ms {self.calls[key]:5d}x  {key}")


if __name__ == "__main__":
    main()
