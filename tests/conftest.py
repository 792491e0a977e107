import pytest
from django.db import connection


@pytest.fixture
def postgres_only():
    """Skip where the behaviour under test is PostgreSQL's own (row locks, triggers on DELETE)."""
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (set DATABASE_URL=postgres://...)")
