"""Hourly trouble counters (kpis.trouble_tables: `StockTroubleHour`, `StockTroubleStep`),
behind `as_of` reads of the stock KPIs, filled from the stock checkpoints and the order lines
as they stand. New tables: nothing else is locked while they fill. A ledger write running
meanwhile on the previous version adds no steps; `rebuild_kpis` writes them all again.
"""

from collections import defaultdict

from django.db import migrations, models

FILL_CHUNK = 20000
DAY_S = 86400
HOUR_S = 3600


def trouble_hours_fill(apps, schema_editor):
    import datetime as dt

    # The judgement of a pair at each hour is the product's (a pure function of its inputs).
    from kpis.trouble_hours import SINCE_ALL, pair_steps

    StockCheckpoint = apps.get_model("dashboards", "StockCheckpoint")
    OrderLineRecord = apps.get_model("dashboards", "OrderLineRecord")
    StockTroubleStep = apps.get_model("dashboards", "StockTroubleStep")
    StockTroubleHour = apps.get_model("dashboards", "StockTroubleHour")
    Sku = apps.get_model("inventory_ops", "Sku")
    SiteReorderPoint = apps.get_model("inventory_ops", "SiteReorderPoint")
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    checkpoints, lines = defaultdict(list), defaultdict(list)
    for site_id, sku_id, at, on_hand, reserved in (
        StockCheckpoint.objects.order_by()
        .values_list("site_id", "sku_id", "at", "on_hand", "reserved")
        .iterator(chunk_size=FILL_CHUNK)
    ):
        checkpoints[(site_id, sku_id)].append((int(at.timestamp()), on_hand, reserved))
    for site_id, sku_id, moment in (
        OrderLineRecord.objects.order_by()
        .values_list("site_id", "sku_id", "occurred_at")
        .iterator(chunk_size=FILL_CHUNK)
    ):
        lines[(site_id, sku_id)].append((moment - epoch) // dt.timedelta(microseconds=1))
    defaults = dict(Sku.objects.values_list("id", "reorder_point"))
    own = {
        (site_id, sku_id): point
        for site_id, sku_id, point in SiteReorderPoint.objects.values_list(
            "site_id", "sku_id", "reorder_point"
        )
    }
    steps, counts = [], defaultdict(lambda: [0, 0, 0])
    for pair in sorted(set(checkpoints) | set(lines)):
        point = own[pair] if pair in own else defaults.get(pair[1])
        found = pair_steps(
            since=SINCE_ALL,
            prior_checkpoint=None,
            checkpoints=checkpoints.get(pair, []),
            prior_line=None,
            lines=lines.get(pair, []),
            reorder_point=point,
        )
        for hour, step in found.items():
            steps.append(
                StockTroubleStep(
                    site_id=pair[0],
                    sku_id=pair[1],
                    at=epoch + dt.timedelta(seconds=hour),
                    negative_stock=step[0],
                    below_reorder_point=step[1],
                    stockouts=step[2],
                )
            )
            for scope in (pair[0], 0):
                for span in (HOUR_S, DAY_S):
                    row = counts[(scope, span, hour - hour % span)]
                    for index, value in enumerate(step):
                        row[index] += value
    StockTroubleStep.objects.bulk_create(steps, batch_size=FILL_CHUNK)
    StockTroubleHour.objects.bulk_create(
        [
            StockTroubleHour(
                site_id=site,
                span_s=span,
                start=epoch + dt.timedelta(seconds=start),
                negative_stock=values[0],
                below_reorder_point=values[1],
                stockouts=values[2],
            )
            for (site, span, start), values in sorted(counts.items())
            if any(values)
        ],
        batch_size=FILL_CHUNK,
    )


class Migration(migrations.Migration):
    dependencies = [
        ("dashboards", "0012_order_line_pair_index"),
        ("inventory_ops", "0008_site_restock_days"),
    ]

    operations = [
        migrations.CreateModel(
            name="StockTroubleHour",
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
            options={
                "constraints": [
                    models.UniqueConstraint(
                        fields=("site_id", "span_s", "start", "shard"),
                        name="stock_trouble_hour_key",
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="StockTroubleStep",
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
                ("negative_stock", models.SmallIntegerField(default=0)),
                ("below_reorder_point", models.SmallIntegerField(default=0)),
                ("stockouts", models.SmallIntegerField(default=0)),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(
                        fields=("site_id", "sku_id", "at"), name="stock_trouble_step_key"
                    )
                ],
            },
        ),
        migrations.RunPython(trouble_hours_fill, migrations.RunPython.noop, elidable=True),
    ]
