"""Settings of the test run: the project's own, given a secret key of its own.

`DEBUG` stays off (as in production), so the settings require `SECRET_KEY`. It goes into this
process's environment, and so to the processes the tests start (Daphne, workers), which must
share it: a session signed here is checked there.

Under pytest-xdist (`make test TEST_WORKERS=2`), each worker empties the Redis database it
uses, so worker `gwN` takes the database N below the one REDIS_URL names (`make test`: 15, 14,
...); pytest-django gives each worker a test database of its own the same way (`_gwN`).
"""

import os

from django.core.exceptions import ImproperlyConfigured

os.environ.setdefault("SECRET_KEY", "test-only-secret-key-not-for-any-deployment-0123456789")


def _redis_url_of_worker(url: str, worker: str) -> str:
    base, _, db = url.rpartition("/")
    index = int(worker.removeprefix("gw"))
    if not db.isdigit() or int(db) - index < 1:
        raise ImproperlyConfigured(
            f"pytest-xdist worker {worker} takes the Redis database {index} below REDIS_URL's "
            f"({url}), which must then be a redis://host:port/N URL with N above {index} "
            "(database 0 is the development database)."
        )
    return f"{base}/{int(db) - index}"


# Once per worker: a pytest that a test runs inherits the worker's environment, already shifted.
_worker = os.environ.get("PYTEST_XDIST_WORKER")
if _worker and os.environ.get("REDIS_URL") and os.environ.get("TESTS_REDIS_WORKER") != _worker:
    os.environ["REDIS_URL"] = _redis_url_of_worker(os.environ["REDIS_URL"], _worker)
    os.environ["TESTS_REDIS_WORKER"] = _worker

from inventory_ops.settings import *  # noqa: E402, F403
