"""A database made and filled by the code before the apps moved (ARCHITECTURE.md) is read as it
is by the code after: no migration to run or to make, the same migration history, content types
and permissions, every row readable through the moved models.

The code before the move is the commit `BEFORE_MOVE`, taken from this repository's history with
`git archive`: its migrations make the database and its `load_demo` fills it (catalog, users,
five weeks of stock history, rollups, runbooks), plus one applied correction. Then the code of
this checkout runs against that database. Migrations added after the move may run; none of
those the database already has may run again, and nothing it held may change or go.
"""

import json
import os
import re
import subprocess
import sys
import uuid
from contextlib import contextmanager

import psycopg
import pytest
from django.db import connection

from tests.processes import BASE_DIR

# The last commit of main before on-call, corrections and the ledger left their old packages.
BEFORE_MOVE = "8b9ea3f"

# Printed by both codes, each with its own import paths: what a database holds, as JSON.
INVENTORY = """
import json
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.models import Sum
from {ledger}.models import Movement, Site, Sku, StockLevel
from {corrections}.models import Correction
from {oncall}.models import Runbook
with connection.cursor() as cursor:
    cursor.execute("SELECT app, name FROM django_migrations ORDER BY app, name")
    migrations = [list(row) for row in cursor.fetchall()]
print(json.dumps({{
    "migrations": migrations,
    "tables": sorted(connection.introspection.table_names()),
    "content_types": sorted([ct.app_label, ct.model, ct.pk] for ct in ContentType.objects.all()),
    "permissions": sorted(
        [p.content_type.app_label, p.codename, p.pk] for p in Permission.objects.all()
    ),
    "groups": {{
        group.name: sorted(
            f"{{p.content_type.app_label}}.{{p.codename}}" for p in group.permissions.all()
        )
        for group in Group.objects.all()
    }},
    "sites": sorted(Site.objects.values_list("code", flat=True)),
    "skus": sorted(Sku.objects.values_list("code", flat=True)),
    "movements": Movement.objects.count(),
    "stock": StockLevel.objects.aggregate(total=Sum("on_hand"))["total"],
    "corrections": sorted(Correction.objects.values_list("reason", "delta", "status")),
    "runbooks": Runbook.objects.count(),
}}))
"""

ONE_CORRECTION = """
from django.contrib.auth import get_user_model
from inventory_ops.corrections.services import CorrectionDraft, corrections_request
from inventory_ops.models import StockLevel
level = StockLevel.objects.order_by("pk").first()
corrections_request(
    drafts=[CorrectionDraft(site=level.site.code, sku=level.sku.code, reason="found", delta=1)],
    requested_by=get_user_model().objects.get(username="manager"),
)
"""


def _inventory(code_dir, env, **paths: str) -> dict:
    output = _run(code_dir, env, "shell", "-c", INVENTORY.format(**paths))
    return json.loads(output.strip().splitlines()[-1])  # after the log lines


def _run(code_dir, env, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=code_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, f"manage.py {' '.join(args)}:\n{result.stdout}{result.stderr}"
    return result.stdout


@contextmanager
def _empty_database(tmp_path):
    """A database of its own, on the engine the suite runs on."""
    settings = connection.settings_dict
    if connection.vendor != "postgresql":
        yield f"sqlite:///{tmp_path / 'before_move.sqlite3'}"
        return
    name = f"io_layout_{uuid.uuid4().hex[:12]}"
    server = {
        "host": settings["HOST"] or "127.0.0.1",
        "port": settings["PORT"] or 5432,
        "user": settings["USER"] or "postgres",
        "password": settings["PASSWORD"] or None,
    }
    with psycopg.connect(dbname="postgres", autocommit=True, **server) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        password = f":{server['password']}" if server["password"] else ""
        yield f"postgres://{server['user']}{password}@{server['host']}:{server['port']}/{name}"
    finally:
        with psycopg.connect(dbname="postgres", autocommit=True, **server) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def code_before_move(tmp_path):
    found = subprocess.run(
        ["git", "cat-file", "-e", f"{BEFORE_MOVE}^{{commit}}"], cwd=BASE_DIR, check=False
    )
    if found.returncode != 0:
        pytest.skip(f"commit {BEFORE_MOVE} is not in this checkout's history (shallow clone?)")
    old = tmp_path / "before_move"
    old.mkdir()
    archive = subprocess.run(
        ["git", "archive", BEFORE_MOVE], cwd=BASE_DIR, capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive.stdout, check=True)
    return old


@pytest.mark.slow
def test_a_database_made_before_the_move_needs_no_migration_and_reads_the_same(
    code_before_move, tmp_path
):
    with _empty_database(tmp_path) as database_url:
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "DJANGO_SETTINGS_MODULE": "inventory_ops.settings",
            "SECRET_KEY": "layout-upgrade-test-secret-key-0123456789-abcdefghijklmnop",
            "DEBUG": "1",
        }
        _run(code_before_move, env, "migrate", "--noinput")
        _run(code_before_move, env, "load_demo")
        _run(code_before_move, env, "shell", "-c", ONE_CORRECTION)
        before = _inventory(
            code_before_move,
            env,
            ledger="inventory_ops",
            corrections="inventory_ops.corrections",
            oncall="dashboards.oncall",
        )

        planned = re.findall(r"^(\w+)\.(\d{4}\w*)$", _run(BASE_DIR, env, "migrate", "--plan"), re.M)
        assert not {f"{app}.{name}" for app, name in planned} & {
            f"{app}.{name}" for app, name in before["migrations"]
        }
        _run(BASE_DIR, env, "makemigrations", "--check", "--dry-run")
        # migrate runs post_migrate: under a changed app label it would add content types and
        # permissions, and the role groups would miss them.
        _run(BASE_DIR, env, "migrate", "--noinput")
        after = _inventory(
            BASE_DIR, env, ledger="ledger", corrections="corrections", oncall="oncall"
        )
        assert "inventory_ops.correct_stock" in after["groups"]["stock-staff"]
        assert len(after["corrections"]) == 1
        assert after["movements"] > 0 and after["runbooks"] > 0
        for kept in ("migrations", "tables", "content_types", "permissions"):
            missing = [item for item in before[kept] if item not in after[kept]]
            assert missing == [], kept
        for group, permissions in before["groups"].items():
            assert set(permissions) <= set(after["groups"][group]), group
        rows = ("sites", "skus", "movements", "stock", "corrections", "runbooks")
        assert {key: after[key] for key in rows} == {key: before[key] for key in rows}
        # the stock still equals the sum of its movements, read through the moved ledger
        assert "ledger OK" in _run(BASE_DIR, env, "check_ledger")
