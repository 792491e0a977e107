import django_rq
import pytest


@pytest.fixture
def redis_clean():
    """An empty Redis DB for the test (REDIS_URL names a DB of our own: FLUSHDB, never FLUSHALL)."""
    connection = django_rq.get_connection("default")
    connection.flushdb()
    yield connection
    connection.flushdb()
