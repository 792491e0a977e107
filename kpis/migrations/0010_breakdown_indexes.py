"""Indexes of the delivery records in duration order within a fulfillment bin for one
channel or one courier: the exact percentiles of a breakdown walk to the wanted rank from the
nearer end of the bin, as the plain percentiles do. Built concurrently (writes go on).
"""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models
from django.db.migrations.operations import AddIndex


class AddIndexConcurrentlyOnPostgres(AddIndexConcurrently):
    """CREATE INDEX CONCURRENTLY on PostgreSQL; a plain index elsewhere (SQLite). Printing
    the SQL (`sqlmigrate`, the migration linter) runs nothing, so it may be in a transaction."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor != "postgresql":
            AddIndex.database_forwards(self, app_label, schema_editor, from_state, to_state)
            return
        if not schema_editor.collect_sql:
            self._ensure_not_in_transaction(schema_editor)
        model = to_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            schema_editor.add_index(model, self.index, concurrently=True)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor != "postgresql":
            AddIndex.database_backwards(self, app_label, schema_editor, from_state, to_state)
            return
        if not schema_editor.collect_sql:
            self._ensure_not_in_transaction(schema_editor)
        model = from_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            schema_editor.remove_index(model, self.index, concurrently=True)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("dashboards", "0009_breakdowns"),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgres(
            model_name="deliveryrecord",
            index=models.Index(
                fields=["channel", "fulfillment_bin", "fulfillment_us", "occurred_at"],
                name="delivery_channel_duration_idx",
            ),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name="deliveryrecord",
            index=models.Index(
                fields=["courier_id", "fulfillment_bin", "fulfillment_us", "occurred_at"],
                name="delivery_courier_duration_idx",
            ),
        ),
    ]
