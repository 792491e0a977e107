"""Re-create the decided-count-sheet trigger on SQLite.

SQLite applies 0004's AlterField by rebuilding the count sheet table, and a rebuild drops the
table's triggers, so every SQLite database migrated past 0004 let an applied or rejected count
sheet be edited. PostgreSQL alters the table in place and keeps its trigger: nothing to do there.
"""

from django.db import migrations

SQLITE_FORWARD = """
CREATE TRIGGER IF NOT EXISTS corrections_countsheet_immutable BEFORE UPDATE ON corrections_countsheet
WHEN OLD.status IN ('applied', 'rejected')
BEGIN
    SELECT RAISE(ABORT, 'an applied or rejected row is immutable: UPDATE refused');
END;
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        schema_editor.execute(SQLITE_FORWARD)


class Migration(migrations.Migration):
    dependencies = [("corrections", "0004_count_sheet_approval")]
    # Backward is a no-op: 0003's reverse drops the trigger when immutability itself is undone.
    operations = [migrations.RunPython(forward, migrations.RunPython.noop)]
