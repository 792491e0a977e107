# Orders: only the indexes that are used (id, order_id), order_id in byte order. Each index
# cost every inserted order (~3,600 per 10,000-event group) an entry; bench/README.md,
# "Per-event work in ingest/".

import django.db.models.deletion
from django.db import migrations, models

import ingest.models


class Migration(migrations.Migration):
    dependencies = [
        ("ingest", "0007_processed_event_composite_key"),
        ("inventory_ops", "0004_movement_without_foreign_key_checks"),
    ]

    operations = [
        migrations.AlterField(
            model_name="order",
            name="order_id",
            field=ingest.models.ByteOrderCharField(max_length=200),
        ),
        migrations.AlterField(
            model_name="order",
            name="site",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="inventory_ops.site",
            ),
        ),
        migrations.AlterField(
            model_name="order",
            name="source",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="ingest.feedsource",
            ),
        ),
        migrations.AddConstraint(
            model_name="order",
            constraint=models.UniqueConstraint(fields=("order_id",), name="unique_order_id"),
        ),
    ]
