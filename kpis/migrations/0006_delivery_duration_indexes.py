"""Indexes of the delivery records in duration order within a fulfillment bin, so the exact
percentile read of a long window walks to the wanted rank from the nearer end of its bin
instead of sorting all the bin's rows in the window. Indexes only: no data changes, no
`rebuild_kpis` needed.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("dashboards", "0005_stock_trouble_counts"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="deliveryrecord",
            index=models.Index(
                fields=["fulfillment_bin", "fulfillment_us", "occurred_at"],
                name="delivery_bin_duration_idx",
            ),
        ),
        migrations.AddIndex(
            model_name="deliveryrecord",
            index=models.Index(
                fields=["site_id", "fulfillment_bin", "fulfillment_us", "occurred_at"],
                name="delivery_site_duration_idx",
            ),
        ),
    ]
