"""Worker heartbeats with a short lifetime, for liveness probes and for on-call.

RQ's own worker heartbeat lives 420 s + 60 s and is renewed once per blocking dequeue, so it
says "alive" for minutes after a worker died; and after a Redis restart RQ forgets the worker
(`Worker.all()` finds none) until the worker restarts. So every `IngestWorker` beats on its
own every `WORKER_HEARTBEAT_SECONDS`, from a thread that needs neither Redis nor the database:

- to a file of its own, `<WORKER_HEARTBEAT_DIR>/worker-<pid>.json`: what a process supervisor or a
  Kubernetes exec probe on the same host checks (`python manage.py worker_alive`). It keeps
  beating while Redis or the database is away: the worker waits for them and resumes by itself,
  and restarting it would not bring them back;
- to Redis, a key per worker that expires `WORKER_HEARTBEAT_TTL_FACTOR` beats later: the
  deployment's live workers, for on-call (`/readyz` details, `worker_alive --anywhere`).
"""

import json
import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from redis import Redis

logger = logging.getLogger(__name__)

REDIS_KEY_PREFIX = "inventory_ops:worker-heartbeat:"
# A heartbeat older than this many beats means the worker is gone (or stuck).
WORKER_HEARTBEAT_TTL_FACTOR = 3


def heartbeat_seconds() -> float:
    return float(getattr(settings, "WORKER_HEARTBEAT_SECONDS", 5))


def heartbeat_max_age() -> float:
    return heartbeat_seconds() * WORKER_HEARTBEAT_TTL_FACTOR


def heartbeat_dir() -> Path:
    return Path(getattr(settings, "WORKER_HEARTBEAT_DIR", settings.BASE_DIR / "var" / "run"))


@dataclass(frozen=True)
class Heartbeat:
    name: str
    pid: int
    hostname: str
    queues: list[str]
    beat_at: float  # Unix time

    def age(self, now: float | None = None) -> float:
        return (time.time() if now is None else now) - self.beat_at

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "pid": self.pid,
            "hostname": self.hostname,
            "queues": self.queues,
            "beat_at": self.beat_at,
        }


def heartbeat_make(*, name: str, queues: list[str]) -> Heartbeat:
    return Heartbeat(
        name=name,
        pid=os.getpid(),
        hostname=socket.gethostname(),
        queues=queues,
        beat_at=time.time(),
    )


def heartbeat_file(pid: int) -> Path:
    return heartbeat_dir() / f"worker-{pid}.json"


def heartbeat_file_write(beat: Heartbeat) -> None:
    """Replace the file atomically: a probe never reads half a heartbeat."""
    directory = heartbeat_dir()
    directory.mkdir(parents=True, exist_ok=True)
    partial = directory / f".worker-{beat.pid}.json.tmp"
    partial.write_text(json.dumps(beat.as_dict()))
    partial.replace(heartbeat_file(beat.pid))


def heartbeat_file_remove(pid: int) -> None:
    heartbeat_file(pid).unlink(missing_ok=True)


def heartbeat_redis_write(beat: Heartbeat, connection: Redis) -> None:
    ttl = max(1, round(heartbeat_max_age()))
    connection.set(REDIS_KEY_PREFIX + beat.name, json.dumps(beat.as_dict()), ex=ttl)


def heartbeat_redis_remove(name: str, connection: Redis) -> None:
    connection.delete(REDIS_KEY_PREFIX + name)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process, but it exists
    return True


def local_heartbeats(*, pid: int | None = None) -> list[Heartbeat]:
    """Fresh heartbeats of workers running on this host (or of the worker `pid`), newest first.

    A file whose worker process is gone (killed with SIGKILL: no chance to remove it) is not
    fresh whatever its age says.
    """
    paths = [heartbeat_file(pid)] if pid is not None else heartbeat_dir().glob("worker-*.json")
    beats = []
    for path in paths:
        try:
            beat = Heartbeat(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            continue
        if beat.age() <= heartbeat_max_age() and _process_exists(beat.pid):
            beats.append(beat)
    return sorted(beats, key=lambda beat: -beat.beat_at)


def redis_heartbeats(connection: Redis) -> list[Heartbeat]:
    """Live workers of the deployment (their keys expire when they stop beating), by name."""
    keys = sorted(connection.scan_iter(match=REDIS_KEY_PREFIX + "*", count=1000))
    beats = []
    for raw in connection.mget(keys) if keys else []:
        if raw is None:
            continue  # expired between the scan and the read
        try:
            beats.append(Heartbeat(**json.loads(raw)))
        except (ValueError, TypeError):
            logger.warning("ignoring a malformed worker heartbeat: %r", raw)
    return beats
