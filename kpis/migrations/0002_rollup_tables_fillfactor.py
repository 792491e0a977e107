"""Free room on the pages of the rollup rows every feed batch updates, so updates can be HOT.

The current minute's, hour's and day's buckets and histogram bins are updated by every batch
(their indexed key columns never change). `StockStatus` is updated for every level a batch
moves; its partial indexes name on_hand and available, so only the rows whose state is
unchanged are spared (the writer skips them), but the free room still keeps new row versions
on the same page.
"""

from django.db import migrations

FILLFACTOR = {
    "dashboards_kpibucket": 70,
    "dashboards_fulfillmentbin": 70,
    "dashboards_stockstatus": 50,
}


def fillfactor_set(apps, schema_editor, *, back=False):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table, value in FILLFACTOR.items():
        schema_editor.execute(f"ALTER TABLE {table} SET (fillfactor = {100 if back else value})")


def fillfactor_reset(apps, schema_editor):
    fillfactor_set(apps, schema_editor, back=True)


class Migration(migrations.Migration):
    dependencies = [
        ("dashboards", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(fillfactor_set, fillfactor_reset),
    ]
