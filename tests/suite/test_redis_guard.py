"""The suite refuses to run against a Redis database it was not given (it empties it)."""

import os
import subprocess
import sys

import pytest

from tests.processes import BASE_DIR
from tests.redis_db import redis_db_refusal


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6379/15", "redis://127.0.0.1:6379/5", "redis://h:1?db=3"]
)
def test_a_database_chosen_in_the_environment_other_than_0_is_accepted(url):
    assert redis_db_refusal(environ_url=url, url=url) is None


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379", "redis://h?db=0"]
)
def test_the_development_database_is_refused_even_when_named(url):
    refusal = redis_db_refusal(environ_url=url, url=url)

    assert "development database" in refusal
    assert "REDIS_URL=redis://127.0.0.1:6379/15" in refusal


def test_the_settings_default_is_refused_when_redis_url_is_not_set():
    refusal = redis_db_refusal(environ_url=None, url="redis://127.0.0.1:6379/0")

    assert refusal.startswith("REDIS_URL is not set")


@pytest.mark.parametrize("redis_url", [None, "redis://127.0.0.1:6379/0"])
def test_a_bare_pytest_run_on_the_development_database_stops_before_any_test(redis_url):
    # given the environment of a shell where REDIS_URL is unset, or names database 0
    env = {key: value for key, value in os.environ.items() if key != "REDIS_URL"}
    if redis_url:
        env["REDIS_URL"] = redis_url

    # when pytest is run there
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    # then it refuses, says why and how to fix it, and runs no test
    output = result.stdout + result.stderr
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, output
    assert "development database" in output
    assert " passed" not in output
