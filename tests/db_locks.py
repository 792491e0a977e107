"""A database that does not answer in time, made with a real lock (PostgreSQL only)."""

import threading
from contextlib import contextmanager

from django.db import connection, transaction


@contextmanager
def table_locked(table: str, mode: str = "ACCESS EXCLUSIVE"):
    """Hold a `mode` lock on `table` from another connection: with ACCESS EXCLUSIVE every read
    and write of it waits, with EXCLUSIVE only the writes do; this connection's lock_timeout
    makes a wait fail as a database that does not answer would (OperationalError)."""
    locked, release, errors = threading.Event(), threading.Event(), []

    def hold():
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(f"LOCK TABLE {table} IN {mode} MODE")
                locked.set()
                release.wait(timeout=60)
        except BaseException as error:  # reported to the test
            errors.append(error)
            locked.set()
        finally:
            connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    assert locked.wait(timeout=30)
    assert not errors, errors
    with connection.cursor() as cursor:
        cursor.execute("SET lock_timeout = '300ms'")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = 0")
        release.set()
        holder.join(timeout=30)
        assert not holder.is_alive(), "the lock holder is stuck"
