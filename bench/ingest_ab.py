"""Interleaved A/B of ingest throughput: the SLO counters on (A) and off (B), run after run.

    REDIS_URL=redis://127.0.0.1:6379/K BENCH_DATABASE_URL=postgres://.../io_x \\
        flock /tmp/bench.lock .venv/bin/python bench/ingest_ab.py [--pairs 5] [--workers 1 2]
        [--events 200000] [--waits]

On a shared machine absolute figures move with the other users' load; two runs next to each
other see about the same load, so the difference within each pair (A then B, with the same
events, for each number of workers) is what tells whether the counters cost something. Each
run is `ingest_throughput.run` (a fresh database, Daphne, N workers, 200,000 simulator events
POSTed by 2 clients, timed until every event is applied); "off" starts the same processes with
the counters switched off (bench/slo_off.py). Printed per run: events/s, the load average
(`/proc/loadavg`) before it, how busy the two cores were during the timed part, and the SLO
counter rows the run left (0 when off). At the end: per arm and number of workers the median,
minimum and maximum, and the median of the paired differences (B - A) / A.

`--waits` samples `pg_stat_activity` of the benchmark database every 25 ms during each timed
part and prints what the active backends were doing (wait event, or CPU when none), with the
statement's first words: where two workers wait on each other.
"""

import argparse
import functools
import os
import statistics
import threading
import time
from collections import Counter
from contextlib import contextmanager, suppress

import ingest_stack
import ingest_throughput


def loadavg() -> str:
    with open("/proc/loadavg") as file:
        return " ".join(file.read().split()[:3])


def cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot."""
    with open("/proc/stat") as file:
        fields = [int(value) for value in file.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _proc_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as file:
        fields = file.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def stack_cpu_s() -> dict[str, float]:
    """CPU seconds used so far by this process's children (Daphne as "web", the workers) and
    by the PostgreSQL backends of the benchmark database alive now ("postgres")."""
    import psycopg

    used: Counter = Counter()
    me = str(os.getpid())
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as file:
                if file.read().rsplit(")", 1)[1].split()[1] != me:
                    continue
            with open(f"/proc/{entry}/cmdline") as file:
                cmdline = file.read()
            used["web" if "daphne" in cmdline else "workers"] += _proc_cpu_s(int(entry))
        except (OSError, IndexError):
            continue
    with psycopg.connect(ingest_stack.BENCH_DATABASE_URL, autocommit=True) as connection:
        pids = connection.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        ).fetchall()
    for (pid,) in pids:
        with suppress(OSError):
            used["postgres"] += _proc_cpu_s(pid)
    return used


class WaitSampler:
    """What the benchmark database's active backends do, sampled every `interval` seconds."""

    QUERY = (
        "SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU'), "
        "regexp_replace(left(query, 200), '\\s+', ' ', 'g') FROM pg_stat_activity "
        "WHERE datname = current_database() AND state = 'active' AND pid <> pg_backend_pid()"
    )

    def __init__(self, interval: float = 0.025) -> None:
        self.interval = interval
        self.samples = 0
        self.events: Counter = Counter()
        self.statements: Counter = Counter()
        self._stop = threading.Event()

    def _loop(self) -> None:
        import psycopg

        with psycopg.connect(ingest_stack.BENCH_DATABASE_URL, autocommit=True) as connection:
            while not self._stop.wait(self.interval):
                self.samples += 1
                for event, query in connection.execute(self.QUERY).fetchall():
                    self.events[event] += 1
                    self.statements[(event, _statement_words(query))] += 1

    @contextmanager
    def running(self):
        thread = threading.Thread(target=self._loop, daemon=True)
        thread.start()
        try:
            yield
        finally:
            self._stop.set()
            thread.join()

    def report(self) -> str:
        lines = [f"    backends active per sample: {sum(self.events.values()) / self.samples:.2f}"]
        for event, count in self.events.most_common(8):
            lines.append(f"    {count / self.samples:5.2f}  {event}")
        lines.append("    by statement (active backends per sample):")
        for (event, words), count in self.statements.most_common(12):
            lines.append(f"    {count / self.samples:5.2f}  {event:28} {words}")
        return "\n".join(lines)


def _statement_words(query: str) -> str:
    words = query.replace('"', "").split()
    if not words:
        return ""
    verb = words[0].upper()
    for keyword in ("INTO", "UPDATE", "FROM"):
        upper = [word.upper() for word in words]
        if keyword in upper[: 40 if keyword == "FROM" else 4]:
            table = words[upper.index(keyword) + 1] if keyword != "UPDATE" else words[1]
            return f"{verb} {table}"[:70]
    return " ".join(words[:4])[:70]


def one_run(args, *, workers: int, slo_counters: bool) -> dict:
    load = loadavg()
    sampler = WaitSampler() if args.waits else None
    cpu = {}

    @contextmanager
    def during():
        cpu["start"] = cpu_times()
        cpu["stack_start"] = stack_cpu_s()
        if sampler:
            with sampler.running():
                yield
        else:
            yield
        cpu["end"] = cpu_times()
        cpu["stack_end"] = stack_cpu_s()

    result = ingest_throughput.run(
        events=args.events,
        batch_size=args.batch_size,
        workers=workers,
        clients=args.clients,
        stored=False,
        slo_counters=slo_counters,
        during=during,
        template=True,
    )
    busy = (cpu["end"][0] - cpu["start"][0]) / (cpu["end"][1] - cpu["start"][1])
    # PostgreSQL backends that started during the run count whole (they started at 0).
    used = {
        name: cpu["stack_end"][name] - cpu["stack_start"].get(name, 0.0)
        for name in ("web", "workers", "postgres")
    }
    result.update(load=load, busy=busy, arm="on" if slo_counters else "off", cpu=used)
    print(
        f"  {result['arm']:>3}, {workers} worker(s): {result['events_per_s']:8,.0f} events/s "
        f"({result['elapsed_s']:.1f} s), load before {load}, cores busy {busy:.0%}, "
        f"SLO rows {result['slo_rows']}, applied {result['applied']:,}, "
        f"held {result['held']:,}; CPU s per 10,000 events: "
        + ", ".join(f"{name} {s * 10_000 / args.events:.2f}" for name, s in used.items())
        + f" (cores used {sum(used.values()) / result['elapsed_s']:.2f})",
        flush=True,
    )
    if sampler:
        print(sampler.report(), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--waits", action="store_true", help="sample pg_stat_activity")
    parser.add_argument("--only-on", action="store_true", help="counters on only, no pairs")
    parser.add_argument(
        "--alternate-order",
        action="store_true",
        help="off first in every other pair (ABBA...): a trend of the load then favours neither",
    )
    parser.add_argument(
        "--no-diagnosis",
        action="store_true",
        help="skip the last run: 2 workers, counters on, pg_stat_activity sampled",
    )
    args = parser.parse_args()
    arms = [True] if args.only_on else [True, False]
    results = []
    import ingest_common  # after ingest_stack: it sets up Django for the benchmark database

    # Every run of a number of workers POSTs the same events: made once.
    ingest_common.simulator_batches = functools.lru_cache(ingest_common.simulator_batches)
    ingest_stack.template_drop()  # a template left by older code would skip its migrations
    print(f"start: load {loadavg()}, {time.strftime('%H:%M:%S', time.gmtime())} UTC", flush=True)
    for pair in range(args.pairs):
        print(f"pair {pair + 1}", flush=True)
        for workers in args.workers:
            flipped = args.alternate_order and pair % 2 == 1
            for slo_counters in reversed(arms) if flipped else arms:
                results.append(one_run(args, workers=workers, slo_counters=slo_counters))
    print(f"end: load {loadavg()}, {time.strftime('%H:%M:%S', time.gmtime())} UTC", flush=True)
    summary(args, arms, results)
    if not args.no_diagnosis and not args.waits:
        print("diagnosis: 2 workers, counters on, pg_stat_activity sampled", flush=True)
        args.waits = True
        one_run(args, workers=2, slo_counters=True)
    ingest_stack.template_drop()


def summary(args, arms: list[bool], results: list[dict]) -> None:
    for workers in args.workers:
        for arm in ("on", "off")[: len(arms)]:
            rates = _rates(results, workers, arm)
            print(
                f"{workers} worker(s), counters {arm:>3}: median {statistics.median(rates):,.0f} "
                f"events/s, min {min(rates):,.0f}, max {max(rates):,.0f} ({len(rates)} runs)"
            )
        if len(arms) == 2:
            on, off = _rates(results, workers, "on"), _rates(results, workers, "off")
            diffs = [(b - a) / a for a, b in zip(on, off, strict=True)]
            print(
                f"{workers} worker(s), off vs on within each pair: median "
                f"{statistics.median(diffs):+.1%}, from {min(diffs):+.1%} to {max(diffs):+.1%} "
                f"({', '.join(f'{d:+.1%}' for d in diffs)})"
            )


def _rates(results: list[dict], workers: int, arm: str) -> list[float]:
    return [r["events_per_s"] for r in results if r["workers"] == workers and r["arm"] == arm]


if __name__ == "__main__":
    main()
