# Every index of the ledger costs each of the ~18,000 movements a 10,000-event feed group
# writes, under the stock-level locks (docs/ingest.md "Write path cost"). Two go: the one on
# recorded_at (nothing looks it up) and the one on sku_id alone, whose job (all movements of a
# SKU, when its cost changes) the level index does once it leads with the SKU.
# On a large ledger, building the new index blocks writes to the table while it runs.

import importlib

import django.db.models.deletion
from django.db import migrations, models

# SQLite rebuilds the movement table to alter its columns, which drops the append-only trigger:
# create it again there, as 0004 does.
sqlite_append_only_again = importlib.import_module(
    "ledger.migrations.0004_movement_without_foreign_key_checks"
).sqlite_append_only_again


class Migration(migrations.Migration):
    dependencies = [
        ("inventory_ops", "0004_movement_without_foreign_key_checks"),
    ]

    operations = [
        # Unapplied, the column changes below rebuild the table again: then this recreates it.
        migrations.RunPython(migrations.RunPython.noop, sqlite_append_only_again),
        migrations.RemoveIndex(
            model_name="movement",
            name="movement_level_idx",
        ),
        migrations.AlterField(
            model_name="movement",
            name="recorded_at",
            field=models.DateTimeField(auto_now_add=True),
        ),
        migrations.AlterField(
            model_name="movement",
            name="sku",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="inventory_ops.sku",
            ),
        ),
        migrations.AddIndex(
            model_name="movement",
            index=models.Index(fields=["sku", "site", "id"], name="movement_level_idx"),
        ),
        migrations.RunPython(sqlite_append_only_again, migrations.RunPython.noop),
    ]
