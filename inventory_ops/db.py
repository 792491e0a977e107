"""Transaction helpers shared by every writer of the ledger."""

import logging
import random
import time
from collections.abc import Callable

from django.db import OperationalError, connection, transaction

logger = logging.getLogger(__name__)

# SQLSTATEs PostgreSQL asks the client to retry: serialization_failure, deadlock_detected.
RETRYABLE_SQLSTATES = {"40001", "40P01"}


def is_retryable(error: OperationalError) -> bool:
    sqlstate = getattr(error.__cause__, "sqlstate", None)
    if sqlstate in RETRYABLE_SQLSTATES:
        return True
    # SQLite: another writer held the lock for longer than the busy timeout.
    return "database is locked" in str(error)


def run_atomic_with_retry[T](work: Callable[[], T], *, attempts: int = 8) -> T:
    """Run `work` in a transaction, retrying it whole when the database asks for a retry.

    Inside an enclosing atomic block no retry is possible (the outer transaction is already
    aborted); the error then goes up to whoever opened the outermost block, which should call
    this helper itself.
    """
    if connection.in_atomic_block:
        with transaction.atomic():
            return work()
    for attempt in range(1, attempts + 1):
        try:
            with transaction.atomic():
                return work()
        except OperationalError as error:
            if attempt == attempts or not is_retryable(error):
                raise
            delay = min(0.5, 0.005 * 2**attempt) * (0.5 + random.random())
            logger.info("retrying transaction after %s (attempt %d)", error, attempt)
            time.sleep(delay)
    raise AssertionError("unreachable")
