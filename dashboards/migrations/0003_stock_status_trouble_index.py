"""One partial index over the pairs in trouble instead of three (see `StockStatus.Meta`)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("dashboards", "0002_fulfillment_bins_grouped"),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="stockstatus",
            name="status_negative_idx",
        ),
        migrations.RemoveIndex(
            model_name="stockstatus",
            name="status_stockout_idx",
        ),
        migrations.RemoveIndex(
            model_name="stockstatus",
            name="status_below_reorder_idx",
        ),
        migrations.AddIndex(
            model_name="stockstatus",
            index=models.Index(
                condition=models.Q(
                    ("on_hand__lt", 0),
                    ("available__lte", 0),
                    models.Q(("available__lt", models.F("reorder_point")), ("has_level", True)),
                    _connector="OR",
                ),
                fields=["site_id"],
                include=(
                    "sku_id",
                    "on_hand",
                    "available",
                    "reorder_point",
                    "has_level",
                    "last_order_line_at",
                ),
                name="status_trouble_idx",
            ),
        ),
    ]
