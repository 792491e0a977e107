"""An applied correction or count sheet is never edited or deleted, in the database itself."""

from django.db import migrations

POSTGRES_FORWARD = """
CREATE OR REPLACE FUNCTION corrections_decided_is_immutable() RETURNS trigger AS $$
BEGIN
    IF OLD.status IN ('applied', 'rejected') THEN
        RAISE EXCEPTION '% of a % % refused: it is immutable', TG_OP, OLD.status, TG_TABLE_NAME
            USING ERRCODE = 'restrict_violation',
                  HINT = 'Undo an applied correction with a reversing correction.';
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER correction_immutable BEFORE UPDATE OR DELETE ON corrections_correction
    FOR EACH ROW EXECUTE FUNCTION corrections_decided_is_immutable();
CREATE TRIGGER countsheet_immutable BEFORE UPDATE OR DELETE ON corrections_countsheet
    FOR EACH ROW EXECUTE FUNCTION corrections_decided_is_immutable();
"""
POSTGRES_BACKWARD = """
DROP TRIGGER IF EXISTS correction_immutable ON corrections_correction;
DROP TRIGGER IF EXISTS countsheet_immutable ON corrections_countsheet;
DROP FUNCTION IF EXISTS corrections_decided_is_immutable();
"""
# SQLite guards updates only (the test runner empties tables with DELETE there).
SQLITE_FORWARD = [
    f"""
CREATE TRIGGER {table}_immutable BEFORE UPDATE ON {table}
WHEN OLD.status IN ('applied', 'rejected')
BEGIN
    SELECT RAISE(ABORT, 'an applied or rejected row is immutable: UPDATE refused');
END;
"""
    for table in ("corrections_correction", "corrections_countsheet")
]
SQLITE_BACKWARD = [
    f"DROP TRIGGER IF EXISTS {table}_immutable;"
    for table in ("corrections_correction", "corrections_countsheet")
]


def forward(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES_FORWARD, params=None)
    elif vendor == "sqlite":
        for statement in SQLITE_FORWARD:
            schema_editor.execute(statement)


def backward(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES_BACKWARD, params=None)
    elif vendor == "sqlite":
        for statement in SQLITE_BACKWARD:
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("corrections", "0002_roles")]
    operations = [migrations.RunPython(forward, backward)]
