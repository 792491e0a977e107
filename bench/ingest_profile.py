"""Profile one worker applying simulator batches in process: where the time goes.

DATABASE_URL=... python bench/ingest_profile.py [--batches 20] [--size 1000]
"""

import argparse
import cProfile
import pstats
import time

from ingest_common import catalog_ensure, simulator_batches, source_token

from ingest.models import FeedSource
from ingest.parsing import events_parse
from ingest.services import batch_process, batch_receive


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--sort", default="cumulative")
    parser.add_argument("--top", type=int, default=30, help="0: time only, no profile")
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
    started = time.perf_counter()
    if args.top:
        profile.enable()
    for batch_id in ids:
        batch_process(batch_id=batch_id)
    profile.disable()
    elapsed = time.perf_counter() - started
    events = args.batches * args.size
    print(f"{events} events in {elapsed:.2f} s: {events / elapsed:,.0f} events/s (one process)")
    if args.top:
        pstats.Stats(profile).sort_stats(args.sort).print_stats(args.top)


if __name__ == "__main__":
    main()
