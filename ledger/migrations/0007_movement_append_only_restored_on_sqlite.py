"""Re-create the movement append-only trigger on SQLite.

SQLite applies 0006's CHECK constraints by rebuilding the movement table, and a rebuild drops
the table's triggers, so every SQLite database migrated past 0006 accepted UPDATEs of ledger
rows. PostgreSQL alters the table in place and keeps its trigger: nothing to do there.
"""

from django.db import migrations

SQLITE_FORWARD = """
CREATE TRIGGER IF NOT EXISTS movement_append_only BEFORE UPDATE ON inventory_ops_movement
BEGIN
    SELECT RAISE(ABORT, 'ledger movements are append-only: UPDATE refused');
END;
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        schema_editor.execute(SQLITE_FORWARD)


class Migration(migrations.Migration):
    dependencies = [("inventory_ops", "0006_event_times_storable")]
    # Backward is a no-op: 0002's reverse drops the trigger when the ledger itself is undone.
    operations = [migrations.RunPython(forward, migrations.RunPython.noop)]
