"""Make sure Redis answers at REDIS_URL before `make run` starts the processes.

If it does not and the URL points at this machine, start a local redis-server (when one is
installed); otherwise say plainly what is wrong and how to fix it, and exit 1.
"""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import redis

REDIS_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
VAR_DIR = Path(__file__).resolve().parent.parent / "var"


def answers() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def main() -> int:
    if answers():
        return 0
    url = urlparse(REDIS_URL)
    host, port = url.hostname or "127.0.0.1", url.port or 6379
    local = host in {"127.0.0.1", "localhost", "::1"}
    server = shutil.which("redis-server")
    if local and server:
        print(
            f"Redis is not answering at {REDIS_URL}; starting a local redis-server on port {port}."
        )
        VAR_DIR.mkdir(exist_ok=True)
        subprocess.run(
            [
                server,
                "--daemonize",
                "yes",
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(VAR_DIR),
                "--logfile",
                str(VAR_DIR / "redis.log"),
            ],
            check=False,
        )
        for _ in range(50):
            if answers():
                return 0
            time.sleep(0.1)
    print(
        f"\nRedis is not reachable at {REDIS_URL}.\n"
        "inventory_ops needs Redis 7 for its job queue and live dashboard updates.\n"
        "Start it, for example:\n"
        "  redis-server --daemonize yes --port 6379 --save '' --appendonly no\n"
        "or install it first (Debian/Ubuntu: sudo apt-get install redis-server), or point\n"
        "REDIS_URL at a running server, then run `make run` again.",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
