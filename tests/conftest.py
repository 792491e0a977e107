import pytest
from django.db import connection

from tests.redis_db import redis_db_refusal_now, redis_test_db_flush


def pytest_configure(config):
    """Refuse to run against a Redis database the test run was not given (tests empty it)."""
    refusal = redis_db_refusal_now()
    if refusal:
        raise pytest.UsageError(refusal)


@pytest.fixture
def redis_clean():
    """An empty Redis database for the test, emptied again after it; yields a client of it."""
    connection = redis_test_db_flush()
    yield connection
    redis_test_db_flush()


@pytest.fixture
def postgres_only():
    """Skip where the behaviour under test is PostgreSQL's own (row locks, triggers on DELETE)."""
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (set DATABASE_URL=postgres://...)")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    """Mark the tests that need PostgreSQL, and give every transactional test
    `serialized_rollback=True`.

    A transactional test empties the database when it ends. Without serialized rollback the
    flush then re-runs post_migrate, which re-creates content types under new keys and loses
    what data migrations made (the role groups); a later test that restores the snapshot, or
    needs the groups, breaks depending on test order. With it, the flush skips post_migrate
    and every transactional test starts from the migrated database.
    """
    for item in items:
        if "postgres_only" in getattr(item, "fixturenames", ()):
            # so that `-m "not postgres"` (the SQLite run of `make test`) leaves it out
            item.add_marker(pytest.mark.postgres)
        marker = item.get_closest_marker("django_db")
        if marker is None or not marker.kwargs.get("transaction"):
            continue
        if "serialized_rollback" in marker.kwargs:
            continue
        item.add_marker(
            pytest.mark.django_db(*marker.args, **marker.kwargs, serialized_rollback=True),
            append=False,
        )
