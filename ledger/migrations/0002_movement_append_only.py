"""Make the ledger append-only in the database itself, not only in the code."""

from django.db import migrations

POSTGRES_FORWARD = """
CREATE OR REPLACE FUNCTION inventory_ops_movement_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'ledger movements are append-only: % refused', TG_OP
        USING ERRCODE = 'restrict_violation',
              HINT = 'Correct stock with a new (reversing) movement instead.';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER movement_append_only BEFORE UPDATE OR DELETE ON inventory_ops_movement
    FOR EACH ROW EXECUTE FUNCTION inventory_ops_movement_append_only();
"""
POSTGRES_BACKWARD = """
DROP TRIGGER IF EXISTS movement_append_only ON inventory_ops_movement;
DROP FUNCTION IF EXISTS inventory_ops_movement_append_only();
"""
# SQLite guards updates only: Django's test runner empties tables with DELETE there (PostgreSQL
# uses TRUNCATE, which row triggers do not see), and SQLite is the local-run database.
SQLITE_FORWARD = """
CREATE TRIGGER movement_append_only BEFORE UPDATE ON inventory_ops_movement
BEGIN
    SELECT RAISE(ABORT, 'ledger movements are append-only: UPDATE refused');
END;
"""
SQLITE_BACKWARD = "DROP TRIGGER IF EXISTS movement_append_only;"


def forward(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES_FORWARD, params=None)
    elif vendor == "sqlite":
        schema_editor.execute(SQLITE_FORWARD)


def backward(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES_BACKWARD, params=None)
    elif vendor == "sqlite":
        schema_editor.execute(SQLITE_BACKWARD)


class Migration(migrations.Migration):
    dependencies = [("inventory_ops", "0001_initial")]
    operations = [migrations.RunPython(forward, backward)]
