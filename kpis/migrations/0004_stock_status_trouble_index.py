"""One partial index over the pairs in trouble instead of three (see `StockStatus.Meta`)."""

from django.db import migrations, models

REPLACED = ("status_negative_idx", "status_stockout_idx", "status_below_reorder_idx")
# What the "now" counts and the worst stockouts read, so that they never visit the table.
COVERED = ["site_id", "sku_id", "on_hand", "available", "reorder_point", "has_level"]
COVERED += ["last_order_line_at"]
TROUBLE = (
    models.Q(on_hand__lt=0)
    | models.Q(available__lte=0)
    | models.Q(available__lt=models.F("reorder_point"), has_level=True)
)


class Migration(migrations.Migration):
    dependencies = [("dashboards", "0003_fulfillment_bins_grouped")]

    operations = [
        *(migrations.RemoveIndex(model_name="stockstatus", name=name) for name in REPLACED),
        migrations.AddIndex(
            model_name="stockstatus",
            index=models.Index(
                condition=TROUBLE,
                fields=COVERED,
                name="status_trouble_idx",
            ),
        ),
    ]
