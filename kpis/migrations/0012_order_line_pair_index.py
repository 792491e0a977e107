"""An index of the order lines by (site, SKU, time): whether a pair had demand in the 30 days
before an `as_of` instant is one index probe. Built concurrently on PostgreSQL (writes go on
while it builds); elsewhere (SQLite, tests) as a plain index."""

from django.db import migrations, models

from core.migration_operations import AddIndexConcurrentlyOnPostgres


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
