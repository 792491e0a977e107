"""Counters of the stock pairs in trouble (`StockTroubleCount`), so the "now" KPIs read a few
rows instead of every pair in trouble; the trouble index is led by the last order line time
(the reads count only the stockout candidates of one edge minute there).

Existing stock status rows are counted here, so the KPIs stay right without a `rebuild_kpis`.
"""

import datetime as dt
from collections import defaultdict

from django.db import migrations, models

ALL_SITES = 0
SPANS = (60, 3600, 86400)
NEGATIVE, BELOW, STOCKOUTS = 0, 1, 2


def counters_count(apps, schema_editor):
    """Count every stock status row into shard 0 (as `rollups._trouble_of` does)."""
    status = apps.get_model("dashboards", "StockStatus")
    counter = apps.get_model("dashboards", "StockTroubleCount")
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    counts = defaultdict(lambda: [0, 0, 0])
    rows = status.objects.values_list(
        "site_id", "has_level", "on_hand", "available", "reorder_point", "last_order_line_at"
    )
    for site_id, has_level, on_hand, available, point, last in rows.iterator(chunk_size=20000):
        for scope in (site_id, ALL_SITES):
            if on_hand < 0:
                counts[(scope, 0, epoch)][NEGATIVE] += 1
            if has_level and point is not None and available < point:
                counts[(scope, 0, epoch)][BELOW] += 1
            if available <= 0 and last is not None:
                minute = last.astimezone(dt.UTC).replace(second=0, microsecond=0)
                buckets = (minute, minute.replace(minute=0), minute.replace(hour=0, minute=0))
                for span, start in zip(SPANS, buckets, strict=True):
                    counts[(scope, span, start)][STOCKOUTS] += 1
    counter.objects.bulk_create(
        (
            counter(
                site_id=site_id,
                span_s=span,
                start=start,
                shard=0,
                negative_stock=values[NEGATIVE],
                below_reorder_point=values[BELOW],
                stockouts=values[STOCKOUTS],
            )
            for (site_id, span, start), values in counts.items()
        ),
        batch_size=5000,
    )


def fillfactor_set(apps, schema_editor):
    # Writers update these rows in place (their key columns never change): room for HOT.
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE dashboards_stocktroublecount SET (fillfactor = 70)")


class Migration(migrations.Migration):
    dependencies = [
        ("dashboards", "0004_stock_status_trouble_index"),
    ]

    operations = [
        migrations.CreateModel(
            name="StockTroubleCount",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("site_id", models.BigIntegerField()),
                ("span_s", models.IntegerField()),
                ("start", models.DateTimeField()),
                ("shard", models.SmallIntegerField(default=0)),
                ("negative_stock", models.BigIntegerField(default=0)),
                ("below_reorder_point", models.BigIntegerField(default=0)),
                ("stockouts", models.BigIntegerField(default=0)),
            ],
        ),
        migrations.AddConstraint(
            model_name="stocktroublecount",
            constraint=models.UniqueConstraint(
                fields=("site_id", "span_s", "start", "shard"), name="stock_trouble_count_key"
            ),
        ),
        migrations.AddField(
            model_name="stockstatus",
            name="was_negative",
            field=models.BooleanField(null=True),
        ),
        migrations.AddField(
            model_name="stockstatus",
            name="was_below",
            field=models.BooleanField(null=True),
        ),
        migrations.AddField(
            model_name="stockstatus",
            name="was_stockout_at",
            field=models.DateTimeField(null=True),
        ),
        migrations.RemoveIndex(
            model_name="stockstatus",
            name="status_trouble_idx",
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
                fields=[
                    "last_order_line_at",
                    "site_id",
                    "sku_id",
                    "on_hand",
                    "available",
                    "reorder_point",
                    "has_level",
                ],
                name="status_trouble_by_demand_idx",
            ),
        ),
        migrations.RunPython(fillfactor_set, migrations.RunPython.noop),
        migrations.RunPython(counters_count, migrations.RunPython.noop),
    ]
