"""Every migration of the project is safe to run on a live PostgreSQL with big tables, as
django-migration-linter judges it from the SQL each one runs: no column dropped or renamed
under a running older version, no NOT NULL column added without a default, and no index created
or dropped without CONCURRENTLY (a plain CREATE INDEX blocks every write to the table while it
builds). A new index goes in with `AddIndexConcurrently` in a migration with `atomic = False`.

The migrations below came before the first deployment (no older version was running, no table
was big) and stay as they are, each with what the linter says of it and why it was safe then.
"""

import pytest
from django_migration_linter import MigrationLinter

from inventory_ops.settings import INSTALLED_APPS

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

PROJECT_APP_LABELS = [
    "inventory_ops",
    "core",
    "corrections",
    "ingest",
    "dashboards",
    "oncall",
    "slos",
]
PROJECT_APPS = [
    "core",
    "ledger",
    "slos",
    "kpis",
    "corrections",
    "ingest",
    "dashboards",
    "oncall",
    "demo",
]

KNOWN_SAFE = {
    ("corrections", "0004_count_sheet_approval"): (
        "NOT NULL columns with defaults and an index on the count sheets, a table of a few "
        "hundred rows; before the first deployment"
    ),
    ("dashboards", "0003_fulfillment_bins_grouped"): (
        "drops and adds columns of a KPI rollup table, derived data that rebuild_kpis writes "
        "again from the ledger; before the first deployment"
    ),
    ("dashboards", "0004_stock_status_trouble_index"): (
        "index changes on the stock status rollup (one row per site and SKU); before the "
        "first deployment"
    ),
    ("dashboards", "0005_stock_trouble_counts"): (
        "a new rollup table and index changes on the stock status rollup; before the first "
        "deployment"
    ),
    ("dashboards", "0006_delivery_duration_indexes"): (
        "an index on the delivery rollup; before the first deployment"
    ),
    ("ingest", "0007_processed_event_composite_key"): (
        "rebuilds the idempotency keys' primary key (drops the surrogate id); before the first "
        "deployment"
    ),
    ("ingest", "0008_orders_fewer_indexes"): (
        "drops order indexes and makes order_id unique; before the first deployment"
    ),
    ("ingest", "0012_feed_token_grace_and_signatures"): (
        "NOT NULL columns with defaults and an index on the feed sources, a table of tens of rows"
    ),
    ("inventory_ops", "0004_movement_without_foreign_key_checks"): (
        "re-creates the ledger's indexes without foreign keys; before the first deployment"
    ),
    ("inventory_ops", "0005_movement_fewer_indexes"): (
        "drops two ledger indexes and re-creates one; before the first deployment"
    ),
    ("oncall", "0003_severity"): (
        "a NOT NULL column with a default on the alert rules, a table of tens of rows"
    ),
}


def test_the_linted_apps_are_every_app_of_the_project():
    assert [app for app in INSTALLED_APPS if app in PROJECT_APPS] == PROJECT_APPS


def test_every_migration_is_safe_on_a_live_database_or_known_safe_with_a_reason(capsys):
    linter = MigrationLinter(
        None,
        include_apps=PROJECT_APP_LABELS,
        ignore_name=[name for _, name in KNOWN_SAFE],
        all_warnings_as_errors=True,
        no_cache=True,
    )
    names = {
        (app, name)
        for app, name in linter.migration_loader.disk_migrations
        if app in PROJECT_APP_LABELS
    }
    # every migration named above exists under that app (a renamed one would lint unchecked)
    assert set(KNOWN_SAFE) <= names
    # and no migration of another app shares its name and hides behind it
    ignored = {name for _, name in KNOWN_SAFE}
    assert {(app, name) for app, name in names if name in ignored} == set(KNOWN_SAFE)

    linter.lint_all_migrations()

    report = capsys.readouterr().out
    assert linter.nb_erroneous == 0, report
    assert linter.nb_warnings == 0, report
    assert linter.nb_valid > 0, report
