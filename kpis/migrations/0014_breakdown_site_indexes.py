"""Indexes of the delivery records by (channel or courier, site, bin, duration, time): the walk
to a key's percentile within one site reads the index only. Built concurrently on PostgreSQL
(writes go on while they build); elsewhere (SQLite, tests) as plain indexes."""

from django.db import migrations, models

from core.migration_operations import AddIndexConcurrentlyOnPostgres


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("dashboards", "0013_trouble_hours"),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgres(
            model_name="deliveryrecord",
            index=models.Index(
                fields=["channel", "site_id", "fulfillment_bin", "fulfillment_us", "occurred_at"],
                name="delivery_channel_site_idx",
            ),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name="deliveryrecord",
            index=models.Index(
                fields=[
                    "courier_id",
                    "site_id",
                    "fulfillment_bin",
                    "fulfillment_us",
                    "occurred_at",
                ],
                name="delivery_courier_site_idx",
            ),
        ),
    ]
