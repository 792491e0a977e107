"""Database CHECK constraints that keep event-time columns within what is stored.

PostgreSQL stores timestamps up to the year 294276, Python's datetime reads them only up to
9999 (in UTC): a row beyond that breaks every read that touches it, and the ledger's rows can
be neither updated nor deleted. Every column an event time flows into carries
`storable_time_check`, so that no writer (a bug, a script, a future path that skips
validation) can store one. Range: `core.timebounds.STORABLE_FROM` .. `STORABLE_UNTIL`.
"""

import functools
import logging
from datetime import UTC, datetime

from django.db import models
from django.db.migrations.operations import AddConstraint
from django.db.models import Q

from core.timebounds import STORABLE_FROM, STORABLE_UNTIL

logger = logging.getLogger(__name__)

# Every such constraint's name ends so: `check_ledger` finds them through the app registry.
STORABLE_CHECK_SUFFIX = "_storable"


def storable_time_check(field: str, *, name: str, null: bool = False) -> models.CheckConstraint:
    """A CHECK keeping `field` from STORABLE_FROM (included) to STORABLE_UNTIL (excluded)."""
    if not name.endswith(STORABLE_CHECK_SUFFIX):
        raise ValueError(f"name a storable time check '..{STORABLE_CHECK_SUFFIX}'")
    condition = Q(**{f"{field}__gte": STORABLE_FROM, f"{field}__lt": STORABLE_UNTIL})
    if null:
        condition |= Q(**{f"{field}__isnull": True})
    return models.CheckConstraint(condition=condition, name=name)


class AddStorableTimeCheck(AddConstraint):
    """Add a time CHECK without failing on rows stored before it existed.

    On PostgreSQL the constraint is added NOT VALID (every new or updated row is checked from
    now on; no table rewrite), then validated if no existing row breaks it. A database that
    already holds such rows (the append-only ledger cannot drop them) keeps the constraint
    unvalidated and says so; `manage.py check_ledger` lists those rows. Elsewhere (SQLite) it
    is an ordinary AddConstraint.
    """

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        connection = schema_editor.connection
        if connection.vendor != "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)
            return
        model = to_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(connection.alias, model):
            return
        table = schema_editor.quote_name(model._meta.db_table)
        name = schema_editor.quote_name(self.constraint.name)
        sql = self.constraint.create_sql(model, schema_editor)
        schema_editor.execute(f"{sql} NOT VALID", params=None)
        column = schema_editor.quote_name(
            model._meta.get_field(storable_check_field(self.constraint)).column
        )
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT count(*) FROM {table} "  # noqa: S608 (our own names)
                f"WHERE NOT ({column} >= %s AND {column} < %s)",
                [STORABLE_FROM, STORABLE_UNTIL],
            )
            (outside,) = cursor.fetchone()
        if outside:
            logger.warning(
                "%s: %d row(s) hold a time outside %s .. %s; the constraint checks new rows "
                "only. manage.py check_ledger lists them.",
                self.constraint.name,
                outside,
                STORABLE_FROM.date(),
                STORABLE_UNTIL.date(),
            )
            return
        schema_editor.execute(f"ALTER TABLE {table} VALIDATE CONSTRAINT {name}", params=None)


def storable_check_field(constraint: models.CheckConstraint) -> str:
    """The field a `storable_time_check` constrains (its first lookup's)."""
    node = constraint.condition
    while isinstance(node, Q):
        node = node.children[0]
    return node[0].split("__", 1)[0]


# What a read gets instead of a stored time Python cannot hold: far outside any real event
# time, yet a year away from datetime's own limits, so that time-zone shifts and window
# arithmetic on it still work. Only rows stored before the constraints can hold such times.
UNREADABLE_LATE = datetime(9999, 1, 1, tzinfo=UTC)
UNREADABLE_EARLY = datetime(2, 1, 1, tzinfo=UTC)


def _unreadable_sentinel(data) -> datetime:
    text = bytes(data)
    early = text.startswith(b"-") or text.endswith(b" BC")
    return UNREADABLE_EARLY if early else UNREADABLE_LATE


@functools.cache
def _readable_tz_loader(timezone):
    from django.db.backends.postgresql.psycopg_any import BaseTzLoader
    from psycopg import DataError

    class ReadableTzLoader(BaseTzLoader):
        """Django's timestamptz loader, giving a far sentinel for times beyond datetime."""

        def load(self, data):
            try:
                return super().load(data)
            except DataError:
                moment = _unreadable_sentinel(data)
                return moment if self.timezone is None else moment.astimezone(self.timezone)

    ReadableTzLoader.timezone = timezone
    return ReadableTzLoader


@functools.cache
def _readable_plain_loaders():
    """Loaders of `timestamp` and `date` (date truncations, the admin's date drill-down)."""
    from psycopg import DataError
    from psycopg.types.datetime import DateLoader, TimestampLoader

    class ReadableTimestampLoader(TimestampLoader):
        def load(self, data):
            try:
                return super().load(data)
            except DataError:
                return _unreadable_sentinel(data).replace(tzinfo=None)

    class ReadableDateLoader(DateLoader):
        def load(self, data):
            try:
                return super().load(data)
            except DataError:
                return _unreadable_sentinel(data).date()

    return {"timestamp": ReadableTimestampLoader, "date": ReadableDateLoader}


def readable_times_loader_register(sender, connection, **kwargs) -> None:
    """On each new PostgreSQL connection (pooled ones too), read every stored time safely.

    Connected to `connection_created` by the app config. psycopg raises DataError on a stored
    year 10000, and every page touching such a row answered 500.
    """
    if connection.vendor != "postgresql":
        return
    adapters = connection.connection.adapters
    adapters.register_loader("timestamptz", _readable_tz_loader(connection.timezone))
    for type_name, loader in _readable_plain_loaders().items():
        adapters.register_loader(type_name, loader)
