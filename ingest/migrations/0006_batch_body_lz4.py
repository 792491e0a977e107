from django.db import DatabaseError, migrations, transaction

# Every accepted request stores its raw body (~250 KB for 1,000 events). PostgreSQL compresses
# such a value with pglz by default: ~4 ms of server CPU per INSERT; lz4 takes ~1 ms and reads
# back as fast (bench/README.md, "Ingest accept side").
TABLE_COLUMN = "ingest_ingestbatch ALTER COLUMN raw_body"


def body_compression(apps, schema_editor, *, method="lz4"):
    if schema_editor.connection.vendor != "postgresql":
        return
    try:
        with transaction.atomic(using=schema_editor.connection.alias):
            schema_editor.execute(f"ALTER TABLE {TABLE_COLUMN} SET COMPRESSION {method}")
    except DatabaseError:
        pass  # a server built without lz4 (or before PostgreSQL 14) keeps pglz


def body_compression_back(apps, schema_editor):
    body_compression(apps, schema_editor, method="default")


class Migration(migrations.Migration):
    dependencies = [
        ("ingest", "0005_keys_and_orders_without_foreign_key_checks"),
    ]

    operations = [
        migrations.RunPython(body_compression, body_compression_back),
    ]
