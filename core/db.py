"""Transaction helpers shared by every writer of the ledger."""

import logging
import random
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

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


# Array parameters (`unnest(%s::bigint[])`) as one array literal each. Django's psycopg cursor
# binds on the client and quotes a Python list element by element, which cost more than
# running the statements of a feed batch; a string is quoted in one step.


def datetime_param(moment: datetime):
    """A datetime as a raw SQL parameter of this database (SQLite stores text, not datetime)."""
    return connection.ops.adapt_datetimefield_value(moment)


def pg_int_array(values: Iterable[int]) -> str:
    return "{" + ",".join(map(str, values)) + "}"


def pg_text_array(values: Iterable[str]) -> str:
    # Inside double quotes only backslash and the double quote need escaping (NUL cannot be
    # stored at all; writers reject it first).
    return (
        "{"
        + ",".join('"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"' for value in values)
        + "}"
    )


def pg_timestamp_array(values: Iterable[datetime]) -> str:
    return "{" + ",".join('"' + value.isoformat() + '"' for value in values) + "}"


# COPY in binary: PostgreSQL then parses no text (timestamps above all), several times faster
# for the tens of thousands of rows a group of feed batches writes. Binary needs each column's
# exact type, taken from the model.
_BINARY_TYPES = {
    "bigint": "int8",
    "integer": "int4",
    "smallint": "int2",
    "boolean": "bool",
    "timestamp with time zone": "timestamptz",
    "uuid": "uuid",
    "jsonb": "jsonb",
    "text": "text",
}


def _binary_type(model, column: str) -> str:
    db_type = model._meta.get_field(column).db_type(connection)
    if db_type.startswith("varchar"):
        return "text"  # the same bytes on the wire
    return _BINARY_TYPES[db_type]


def copy_rows(model, columns: Sequence[str], rows: Iterable[Sequence]) -> None:
    """COPY rows (values in `columns` order; datetimes aware; JSON columns as Python values)
    into the model's table, in binary. PostgreSQL only."""
    types = [_binary_type(model, column) for column in columns]
    # Only the table and column names (ours) are interpolated; the rows are streamed as data.
    sql = f"COPY {model._meta.db_table} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)"
    with connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:
        copy.set_types(types)
        for row in rows:
            copy.write_row(row)
