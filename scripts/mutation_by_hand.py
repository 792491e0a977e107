"""Break the code on purpose, the way a reviewer would, and check that the suite notices.

mutmut (scripts/mutation_run) does not mutate decorated functions: Django views and admin
actions. These hand-written mutants cover them, and the mutations a review of the suite found
surviving: each is applied to the working tree, the tests named with it are run, and the file
is restored (also on Ctrl-C). A mutant no test fails is reported as SURVIVED.

    DATABASE_URL=... REDIS_URL=redis://127.0.0.1:6379/9 .venv/bin/python scripts/mutation_by_hand.py
"""

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str
    original: str
    mutated: str
    tests: tuple[str, ...]


MUTANTS = [
    Mutant(
        "the ingest API answers 503 and stores nothing whenever Redis refuses connections",
        "ingest/api.py",
        '        logger.warning("rate limit not checked (Redis unreachable): %s", error)\n'
        "        return None\n",
        "        from ninja.errors import HttpError\n\n"
        '        raise HttpError(503, "Redis is unreachable: retry") from error\n',
        ("tests/ingest/test_api_outages.py",),
    ),
    Mutant(
        "no permission check on an alert's page",
        "oncall/views.py",
        "def alert_detail(request, pk: int):\n    _require(request, VIEW_ALERT)\n",
        "def alert_detail(request, pk: int):\n",
        ("tests/oncall/test_page_access.py",),
    ),
    Mutant(
        "no permission check on a runbook's past versions",
        "oncall/views.py",
        "def runbook_version(request, slug: str, number: int):\n"
        "    _require(request, VIEW_RUNBOOK)\n",
        "def runbook_version(request, slug: str, number: int):\n",
        ("tests/oncall/test_page_access.py",),
    ),
    Mutant(
        "stock staff may reject a correction",
        "corrections/services.py",
        'permission_require(rejected_by, APPROVE_CORRECTION, "reject corrections")',
        'permission_require(rejected_by, CORRECT_STOCK, "reject corrections")',
        ("tests/corrections/test_decisions.py",),
    ),
    Mutant(
        'the list action "Approve the selected corrections" does nothing',
        "corrections/admin/corrections.py",
        "    def approve_selected(self, request, queryset):\n        approved = 0\n",
        "    def approve_selected(self, request, queryset):\n"
        "        return None\n"
        "        approved = 0\n",
        ("tests/corrections/test_decisions.py",),
    ),
    Mutant(
        "/readyz ready with Redis down",
        "inventory_ops/views.py",
        "    ready = database is None and redis is None\n",
        "    ready = database is None\n",
        ("tests/inventory_ops/test_commands_and_access.py",),
    ),
    Mutant(
        "/readyz ready with the database down",
        "inventory_ops/views.py",
        "    ready = database is None and redis is None\n",
        "    ready = redis is None\n",
        (
            "tests/inventory_ops/test_commands_and_access.py::"
            "test_readyz_is_not_ready_in_seconds_and_tells_nothing_more_when_the_database_is_down",
            "tests/faults/test_web_outages.py::"
            "test_a_database_outage_is_a_503_everywhere_and_over_within_5s_of_its_end",
        ),
    ),
    Mutant(
        "/readyz asks who is asking while the database is down",
        "inventory_ops/views.py",
        "    if database is None and _sees_details(request):\n",
        "    if _sees_details(request):\n",
        (
            "tests/inventory_ops/test_commands_and_access.py::"
            "test_readyz_is_not_ready_in_seconds_and_tells_nothing_more_when_the_database_is_down",
        ),
    ),
    Mutant(
        "an outage met outside a view (the session read for the 404 page) is a 500",
        "inventory_ops/views.py",
        "        return outage_response(request, error)\n",
        "        return outage_response(request)\n",
        (
            "tests/inventory_ops/test_outages.py::"
            "test_a_page_that_fails_while_the_database_is_away_gets_the_503_page_not_the_500_page",
            "tests/faults/test_web_outages.py::"
            "test_a_database_outage_is_a_503_everywhere_and_over_within_5s_of_its_end",
        ),
    ),
    Mutant(
        "acknowledging an alert needs no permission in the view",
        "oncall/views.py",
        "def alert_transition_view(request, pk: int, action: str):\n"
        "    _require(request, CHANGE_ALERT)\n",
        "def alert_transition_view(request, pk: int, action: str):\n",
        ("tests/oncall/test_console.py", "tests/oncall/test_alerts.py"),
    ),
]


def run(mutant: Mutant) -> str:
    path = BASE_DIR / mutant.path
    source = path.read_text()
    if source.count(mutant.original) != 1:
        return "NOT APPLICABLE (the code changed: update the mutant)"
    try:
        path.write_text(source.replace(mutant.original, mutant.mutated))
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *mutant.tests],
            cwd=BASE_DIR,
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        path.write_text(source)
    return "killed" if result.returncode == 1 else f"SURVIVED (pytest exit {result.returncode})"


def main() -> int:
    survived = 0
    for mutant in MUTANTS:
        outcome = run(mutant)
        survived += outcome != "killed"
        print(f"{outcome:12} {mutant.name}", flush=True)
    print(f"{len(MUTANTS) - survived} of {len(MUTANTS)} killed")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
