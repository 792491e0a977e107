"""Run every benchmark's processes as production runs them: DEBUG off.

With DEBUG on, Django keeps every SQL statement of a request in memory and serves extra
debugging machinery: about 2.5 ms more per ingest request on this machine, paid by Daphne and
the workers alike. Call `production_environ_set()` before `django.setup()`: the benchmark's own
process (which writes and logs viewers in, as a worker and a browser would) and every server it
starts (they inherit the environment) then share the same settings, the same SECRET_KEY
included, which the session cookie of the benchmark's viewer depends on.
"""

import os
import secrets

BENCH_ALLOWED_HOSTS = "127.0.0.1,localhost"


def production_environ_set() -> None:
    """Set DEBUG=0 and what it requires (settings.py): a SECRET_KEY and ALLOWED_HOSTS."""
    os.environ["DEBUG"] = "0"
    # A fresh key per run unless one is given: nothing signed outlives a benchmark run.
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
    os.environ.setdefault("ALLOWED_HOSTS", BENCH_ALLOWED_HOSTS)


def settings_line() -> str:
    """What the servers ran with, for the benchmark's printed figures."""
    return f"servers: DEBUG={os.environ.get('DEBUG')}"
