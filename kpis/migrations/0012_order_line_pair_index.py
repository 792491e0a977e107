"""An index of the order lines by (site, SKU, time): whether a pair had demand in the 30 days
before an `as_of` instant is one index probe. Built concurrently on PostgreSQL (writes go on
while it builds); elsewhere (SQLite, tests) as a plain index."""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class AddIndexConcurrentlyOnPostgres(AddIndexConcurrently):
    def _ensure_not_in_transaction(self, schema_editor):
        # Printing the SQL (sqlmigrate, the migration linter inside a test's transaction)
        # runs nothing: only a real run must be outside a transaction.
        if not schema_editor.collect_sql:
            super()._ensure_not_in_transaction(schema_editor)

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)
        else:
            migrations.AddIndex.database_forwards(
                self, app_label, schema_editor, from_state, to_state
            )

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)
        else:
            migrations.AddIndex.database_backwards(
                self, app_label, schema_editor, from_state, to_state
            )


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("dashboards", "0011_stock_checkpoints"),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgres(
            model_name="orderlinerecord",
            index=models.Index(
                fields=["site_id", "sku_id", "occurred_at"], name="order_line_pair_idx"
            ),
        ),
    ]
