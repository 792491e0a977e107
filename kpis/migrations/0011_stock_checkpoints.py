"""Hourly stock checkpoints per (site, SKU), behind `as_of` reads of stock levels and of the
stock KPIs (see kpis.models.StockCheckpoint), filled from the ledger as it stands.

A new table: nothing else is locked while it fills. A ledger write running meanwhile on the
previous version adds no checkpoint; `rebuild_kpis` writes them all again from the ledger.
"""

from django.db import migrations, models

CHECKPOINT_S = 3600
FILL_CHUNK = 20000


def checkpoints_fill(apps, schema_editor):
    import datetime as dt

    Movement = apps.get_model("inventory_ops", "Movement")
    StockCheckpoint = apps.get_model("dashboards", "StockCheckpoint")
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    rows, pair, on_hand, reserved, hour_end = [], None, 0, 0, None

    def flush_hour():
        if hour_end is not None:  # a tuple, not a model instance: a tenth of the memory
            rows.append((pair[0], pair[1], hour_end, on_hand, reserved))

    moves = Movement.objects.order_by("site_id", "sku_id", "occurred_at").values_list(
        "site_id", "sku_id", "occurred_at", "on_hand_delta", "reserved_delta"
    )
    for site_id, sku_id, occurred_at, on_hand_delta, reserved_delta in moves.iterator(
        chunk_size=FILL_CHUNK
    ):
        end = int(occurred_at.timestamp() // CHECKPOINT_S) * CHECKPOINT_S + CHECKPOINT_S
        if (site_id, sku_id) != pair:
            flush_hour()
            pair, on_hand, reserved, hour_end = (site_id, sku_id), 0, 0, None
        elif end != hour_end:
            flush_hour()
        hour_end = end
        on_hand += on_hand_delta
        reserved += reserved_delta
    flush_hour()
    # Written after the read: nothing else runs on the connection while its cursor is open.
    for first in range(0, len(rows), FILL_CHUNK):
        StockCheckpoint.objects.bulk_create(
            [
                StockCheckpoint(
                    site_id=site_id,
                    sku_id=sku_id,
                    at=epoch + dt.timedelta(seconds=end),
                    on_hand=on_hand,
                    reserved=reserved,
                )
                for site_id, sku_id, end, on_hand, reserved in rows[first : first + FILL_CHUNK]
            ]
        )


class Migration(migrations.Migration):
    dependencies = [
        ("dashboards", "0010_breakdown_indexes"),
        ("inventory_ops", "0007_movement_append_only_restored_on_sqlite"),
    ]

    operations = [
        migrations.CreateModel(
            name="StockCheckpoint",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("site_id", models.BigIntegerField()),
                ("sku_id", models.BigIntegerField()),
                ("at", models.DateTimeField()),
                ("on_hand", models.BigIntegerField()),
                ("reserved", models.BigIntegerField()),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(
                        fields=("site_id", "sku_id", "at"), name="stock_checkpoint_key"
                    )
                ],
            },
        ),
        migrations.RunPython(checkpoints_fill, migrations.RunPython.noop, elidable=True),
    ]
