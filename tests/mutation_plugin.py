"""pytest plugin of the mutation run (scripts/mutation_run, docs/testing.md "Mutation run").

mutmut runs each mutant's tests in a pytest session of its own, against one test database
kept between sessions (--reuse-db: migrating it per mutant would cost more than the tests).
This plugin makes that sound and fast:

- Every session starts from the freshly migrated database. A session leaves it emptied when
  its last test was transactional (the flush after it; the role groups and other rows of data
  migrations are restored only at the start of the next transactional test), or with that
  test's rows committed when the session was killed at its CPU limit. Either would fail the
  next mutant's tests, and a mutant failed that way would count as killed. So the database
  is put back as scripts/mutation_run saved it right after migrating (`MUTATION_DB_SNAPSHOT`):
  on PostgreSQL the tables are emptied and a data-only pg_dump's rows inserted, in one
  statement batch; on SQLite the file is copied back.
- A mutant's fastest tests run first: it stops at the first failure (-x), and mutmut's fork
  server hands the tests over in no particular order, so a mutant a 0.05 s test kills could
  otherwise wait behind 20 s of slower ones. The durations are those mutmut measured in its
  stats run (mutmut-stats.json, in the mutants/ directory the run works in). Within the
  groups pytest-django orders tests in (transactional tests last).
- A test that alone took longer than `MUTATION_TEST_SECONDS_MAX` (20 s) in the stats run is
  left out: the permission matrix (every URL for every role, 90 s) reaches the ledger writer
  and would add 90 s to each of its surviving mutants. It runs in the by-hand mutants
  (scripts/mutation_by_hand.py) and in `make test`.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

STATS = Path("mutmut-stats.json")


def _test_database() -> dict[str, str]:
    """libpq's connection parameters of the test database."""
    from django.db import connection

    settings = connection.settings_dict
    parameters = {
        "host": settings["HOST"],
        "port": str(settings["PORT"] or ""),
        "user": settings["USER"],
        "password": settings["PASSWORD"],
        "dbname": connection.creation._get_test_db_name(),
    }
    return {name: value for name, value in parameters.items() if value}


def _sqlite_file() -> Path | None:
    from django.db import connection

    if connection.vendor != "sqlite":
        return None
    return Path(connection.creation._get_test_db_name())


def snapshot_save(path: str) -> None:
    """Save the test database (just migrated): SQLite's file, or PostgreSQL's rows as SQL."""
    if sqlite := _sqlite_file():
        shutil.copyfile(sqlite, path)
        return
    dsn = " ".join(f"{name}={value}" for name, value in _test_database().items())
    dump = subprocess.run(
        ["pg_dump", "--data-only", "--inserts", f"--dbname={dsn}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # pg_dump's backslash lines (\restrict) are psql's, not SQL
    sql = "\n".join(line for line in dump.splitlines() if not line.startswith("\\"))
    Path(path).write_text(sql)


def pytest_sessionstart(session):
    snapshot = os.environ.get("MUTATION_DB_SNAPSHOT")
    if not snapshot:
        return
    if sqlite := _sqlite_file():
        for leftover in (f"{sqlite}-wal", f"{sqlite}-shm"):  # of a killed session
            Path(leftover).unlink(missing_ok=True)
        sqlite.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(snapshot, sqlite)
        return
    import psycopg

    with psycopg.connect(**_test_database(), autocommit=True) as database:
        tables = [
            row[0]
            for row in database.execute(
                "SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = 'public'"
            )
        ]
        database.execute(
            f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE;" + Path(snapshot).read_text()
        )


def _django_order(item) -> int:
    """pytest-django's (and Django's) order: database tests, then transactional ones, then
    the rest. A transactional test empties the database as it ends."""
    marker = item.get_closest_marker("django_db")
    fixtures = getattr(item, "fixturenames", ())
    if (marker and marker.kwargs.get("transaction")) or {
        "transactional_db",
        "live_server",
    } & set(fixtures):
        return 1
    return 0 if marker or "db" in fixtures else 2


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    try:
        durations = json.loads(STATS.read_text())["duration_by_test"]
    except (OSError, ValueError, KeyError):
        return  # the stats run itself, or a run outside mutmut: pytest's order
    seconds_max = float(os.environ.get("MUTATION_TEST_SECONDS_MAX", "20"))
    too_slow = [item for item in items if durations.get(item.nodeid, 0.0) > seconds_max]
    if too_slow:
        config.hook.pytest_deselected(items=too_slow)
        items[:] = [item for item in items if item not in too_slow]
    items.sort(key=lambda item: (_django_order(item), durations.get(item.nodeid, 0.0)))


if __name__ == "__main__":
    import django

    django.setup()
    snapshot_save(os.environ["MUTATION_DB_SNAPSHOT"])
