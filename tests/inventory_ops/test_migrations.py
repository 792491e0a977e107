"""The migrations run on both databases the product supports, whatever the suite runs on.

CI runs the suite on PostgreSQL, while `make run` migrates an embedded SQLite file: a
PostgreSQL-only construct in a migration (a collation named "C", say) would pass CI and break
every newcomer's first `make run`.
"""

import os
import subprocess
import sys

import pytest

from tests.processes import BASE_DIR


def _manage(*args: str, database_url: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "DATABASE_URL": database_url}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_a_fresh_sqlite_database_migrates_forward_and_back(tmp_path):
    database_url = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    for args in (
        ["migrate", "--noinput"],
        ["makemigrations", "--check", "--dry-run"],
        ["migrate", "ingest", "0006", "--noinput"],
        ["migrate", "--noinput"],
    ):
        result = _manage(*args, database_url=database_url)
        assert result.returncode == 0, f"manage.py {' '.join(args)}:\n{result.stderr[-3000:]}"
