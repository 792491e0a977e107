"""A PostgreSQL cluster of a test's own, on a free port, to break on purpose (a Redis of its own:
tests.processes.RedisServer).

The shared servers (127.0.0.1:5432, :6379) serve every other test and helper on the machine: a
test that stops or kills a server starts its own. PostgreSQL comes from Debian's packages
(`initdb`/`pg_ctl`, run as the `postgres` user when the tests run as root).
"""

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.processes import free_port


def _postgres_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise FileNotFoundError(f"{name} not found under /usr/lib/postgresql/*/bin")
    return found[-1]


def _postgres_run(program: str, *args: str, check: bool = True) -> None:
    """Run a PostgreSQL program; as the `postgres` user when we are root (it refuses root)."""
    argv = [_postgres_bin(program), *args]
    if os.geteuid() == 0:
        argv = ["runuser", "-u", "postgres", "--", *argv]
    subprocess.run(argv, check=check, capture_output=True)


class PostgresCluster:
    """A throwaway cluster: `start()`, `stop(mode="immediate")`, `start()` again on one port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="io-faults-pg-"))
        self.data = self.directory / "data"
        self.log = self.directory / "postgres.log"
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres", "postgres")
        _postgres_run(
            "initdb",
            *("-D", str(self.data), "-U", "postgres", "--auth=trust"),
            *("--encoding=UTF8", "--locale=C.UTF-8", "--no-sync"),
        )

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        # fsync off (speed) still hands each commit's WAL to the OS before answering, so an
        # immediate stop (a crash of PostgreSQL, not of the machine) keeps every committed
        # transaction. synchronous_commit must stay on: off, a commit is answered before its WAL
        # is written at all, and the fault suite's immediate stop lost batches answered 202.
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.directory} "
            "-c fsync=off -c full_page_writes=off "
            "-c max_connections=200"
        )
        _postgres_run(
            "pg_ctl",
            *("-D", str(self.data), "-l", str(self.log), "-o", options),
            *("-w", "-t", "120", "start"),
        )

    def stop(self, mode: str = "fast") -> None:
        _postgres_run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def database_create(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)
