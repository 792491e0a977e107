"""How long the workers' jobs take, per queue, as a histogram kept in Redis: every worker adds
its jobs to the same few counters (a hash per queue), and /metrics reads them in one call per
queue, however many jobs ran. A Redis restart starts them again from zero, which Prometheus
reads as a counter reset."""

from redis import Redis

# Upper bounds in seconds: a batch takes tens of milliseconds, housekeeping minutes.
BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
KEY = "inventory_ops:job_seconds:{queue}"


def job_duration_record(connection: Redis, *, queue: str, seconds: float) -> None:
    bucket = next((str(bound) for bound in BUCKETS if seconds <= bound), "+Inf")
    pipeline = connection.pipeline(transaction=False)
    pipeline.hincrby(KEY.format(queue=queue), bucket, 1)
    pipeline.hincrbyfloat(KEY.format(queue=queue), "sum", seconds)
    pipeline.execute()


def job_durations(connection: Redis, queues) -> dict[str, tuple[list[tuple[str, int]], float]]:
    """Per queue: cumulative (upper bound, jobs) pairs ending with ("+Inf", all jobs), and the
    seconds of all jobs; queues that ran no job are left out."""
    pipeline = connection.pipeline(transaction=False)
    for queue in queues:
        pipeline.hgetall(KEY.format(queue=queue))
    found = {}
    for queue, counts in zip(queues, pipeline.execute(), strict=True):
        if not counts:
            continue
        counts = {key.decode(): value for key, value in counts.items()}
        cumulative, buckets = 0, []
        for bound in (*map(str, BUCKETS), "+Inf"):
            cumulative += int(counts.get(bound, 0))
            buckets.append((bound, cumulative))
        found[queue] = (buckets, float(counts.get("sum", 0)))
    return found
