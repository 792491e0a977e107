import secrets
import subprocess
import sys

import pytest
from django.db import connection

from tests.processes import BASE_DIR, subprocess_env


def fresh_python(*args: str, **env: str) -> subprocess.CompletedProcess:
    """Run Python in a new process given this environment (settings are read at import)."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=BASE_DIR,
        env=subprocess_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def django_check(**env: str) -> subprocess.CompletedProcess:
    return fresh_python("manage.py", "check", **env)


def test_without_debug_the_app_refuses_to_start_without_a_secret_key():
    env = {"DEBUG": "0", "SECRET_KEY": ""}

    result = django_check(**env)

    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_with_debug_off_and_a_secret_key_the_app_starts():
    result = django_check(DEBUG="0", SECRET_KEY="x" * 50)

    assert result.returncode == 0, result.stderr


@pytest.mark.django_db
def test_sqlite_runs_in_wal_mode_with_a_busy_timeout():
    if connection.vendor != "sqlite":
        pytest.skip("SQLite only")
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        assert cursor.fetchone()[0] == "wal"
        cursor.execute("PRAGMA busy_timeout")
        assert cursor.fetchone()[0] >= 5000


def settings_value(name: str, **env: str) -> subprocess.CompletedProcess:
    """Print one setting as a fresh process, given this environment, sees it."""
    code = (
        f"import django; django.setup(); from django.conf import settings; print(settings.{name})"
    )
    return fresh_python("-c", code, **env)


def test_debug_is_off_unless_switched_on():
    # The value is the last line (apps may log on start).
    unset = settings_value("DEBUG", DEBUG="", SECRET_KEY="x" * 50)
    switched_on = settings_value("DEBUG", DEBUG="1")

    assert unset.stdout.splitlines()[-1] == "False"
    assert switched_on.stdout.splitlines()[-1] == "True"


def test_a_deployment_that_forgets_debug_and_the_key_refuses_to_start():
    result = settings_value("DEBUG", DEBUG="", SECRET_KEY="")

    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def deploy_check(**env: str) -> subprocess.CompletedProcess:
    return fresh_python("manage.py", "check", "--deploy", "--fail-level", "WARNING", **env)


def test_check_deploy_passes_with_https_on_and_a_random_secret_key():
    result = deploy_check(DEBUG="0", HTTPS="1", SECRET_KEY=secrets.token_urlsafe(50)[:50])

    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_names_what_is_missing_without_https():
    result = deploy_check(DEBUG="0", HTTPS="", SECRET_KEY=secrets.token_urlsafe(50)[:50])

    assert result.returncode != 0
    for warning in ("W004", "W008", "W012", "W016"):
        assert warning in result.stderr
