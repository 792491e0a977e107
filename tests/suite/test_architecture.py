"""The house stays the way ARCHITECTURE.md draws it: imports point one way, modules stay small."""

import subprocess
import sys
from pathlib import Path

from tests.processes import BASE_DIR

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"

# Every module of the apps stays under this many lines (migrations and tests aside).
MODULE_LINES_MAX = 500
APPS = (
    "inventory_ops",
    "demo",
    "dashboards",
    "oncall",
    "ingest",
    "corrections",
    "kpis",
    "slos",
    "ledger",
    "core",
)


def _lint_imports(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", *args],
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_no_import_runs_against_the_direction_of_the_layers():
    result = _lint_imports()

    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_the_check_sees_the_real_imports_an_upside_down_order_is_broken(tmp_path):
    upside_down = tmp_path / "upside_down.toml"
    upside_down.write_text(
        '[tool.importlinter]\nroot_packages = ["ledger", "core"]\n'
        '[[tool.importlinter.contracts]]\nname = "core above ledger"\ntype = "layers"\n'
        'layers = ["core", "ledger"]\n'
    )

    result = _lint_imports("--config", str(upside_down))

    assert result.returncode == 1
    assert "ledger.models -> core.timechecks" in result.stdout


def test_no_module_outgrows_its_room():
    too_big = {}
    for app in APPS:
        for path in (BASE_DIR / app).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            name = path.relative_to(BASE_DIR).as_posix()
            lines = len(path.read_text().splitlines())
            if lines > MODULE_LINES_MAX:
                too_big[name] = lines

    assert too_big == {}
