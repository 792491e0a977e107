"""Indexes of the delivery records in duration order within a fulfillment bin for one
channel or one courier: the exact percentiles of a breakdown walk to the wanted rank from the
nearer end of the bin, as the plain percentiles do. Built concurrently (writes go on).
"""

from django.db import migrations, models

from core.migration_operations import AddIndexConcurrentlyOnPostgres


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("dashboards", "0009_breakdowns"),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgres(
            model_name="deliveryrecord",
            index=models.Index(
                fields=["channel", "fulfillment_bin", "fulfillment_us", "occurred_at"],
                name="delivery_channel_duration_idx",
            ),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name="deliveryrecord",
            index=models.Index(
                fields=["courier_id", "fulfillment_bin", "fulfillment_us", "occurred_at"],
                name="delivery_courier_duration_idx",
            ),
        ),
    ]
