"""The `by=channel` and `by=courier` breakdowns of the delivery KPIs: each delivery record
keeps its order's channel and its courier, and two rollup tables keep the delivery sums and the
fulfillment-time histogram per channel and per courier. New tables, and columns with a
database default (existing deliveries get "": unknown courier, no channel); their indexes
come in 0010, built concurrently. Run `rebuild_kpis` after it to fill the new tables from the
deliveries already recorded.
"""

import datetime

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("dashboards", "0008_demand_buckets"),
    ]

    operations = [
        migrations.CreateModel(
            name="BreakdownBin",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("dimension", models.SmallIntegerField(choices=[(1, "channel"), (2, "courier")])),
                ("site_id", models.BigIntegerField()),
                ("span_s", models.IntegerField()),
                ("start", models.DateTimeField()),
                ("key", models.CharField(max_length=200)),
                ("bin_group", models.IntegerField()),
                ("shard", models.SmallIntegerField(default=0)),
                ("count_0", models.BigIntegerField(default=0)),
                ("count_1", models.BigIntegerField(default=0)),
                ("count_2", models.BigIntegerField(default=0)),
                ("count_3", models.BigIntegerField(default=0)),
                ("count_4", models.BigIntegerField(default=0)),
                ("count_5", models.BigIntegerField(default=0)),
                ("count_6", models.BigIntegerField(default=0)),
                ("count_7", models.BigIntegerField(default=0)),
                ("count_8", models.BigIntegerField(default=0)),
                ("count_9", models.BigIntegerField(default=0)),
                ("count_10", models.BigIntegerField(default=0)),
                ("count_11", models.BigIntegerField(default=0)),
                ("count_12", models.BigIntegerField(default=0)),
                ("count_13", models.BigIntegerField(default=0)),
                ("count_14", models.BigIntegerField(default=0)),
                ("count_15", models.BigIntegerField(default=0)),
            ],
            options={
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(
                            (
                                "start__gte",
                                datetime.datetime(1900, 1, 1, 0, 0, tzinfo=datetime.UTC),
                            ),
                            (
                                "start__lt",
                                datetime.datetime(2500, 1, 1, 0, 0, tzinfo=datetime.UTC),
                            ),
                        ),
                        name="breakdown_bin_start_storable",
                    ),
                    models.UniqueConstraint(
                        fields=(
                            "dimension",
                            "site_id",
                            "span_s",
                            "start",
                            "key",
                            "bin_group",
                            "shard",
                        ),
                        name="breakdown_bin_key",
                    ),
                ],
            },
        ),
        migrations.CreateModel(
            name="BreakdownBucket",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("dimension", models.SmallIntegerField(choices=[(1, "channel"), (2, "courier")])),
                ("site_id", models.BigIntegerField()),
                ("span_s", models.IntegerField()),
                ("start", models.DateTimeField()),
                ("key", models.CharField(max_length=200)),
                ("shard", models.SmallIntegerField(default=0)),
                ("deliveries", models.BigIntegerField(default=0)),
                ("accurate_deliveries", models.BigIntegerField(default=0)),
                ("shipping_cost_e4", models.BigIntegerField(default=0)),
            ],
            options={
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(
                            (
                                "start__gte",
                                datetime.datetime(1900, 1, 1, 0, 0, tzinfo=datetime.UTC),
                            ),
                            (
                                "start__lt",
                                datetime.datetime(2500, 1, 1, 0, 0, tzinfo=datetime.UTC),
                            ),
                        ),
                        name="breakdown_bucket_start_storable",
                    ),
                    models.UniqueConstraint(
                        fields=("dimension", "site_id", "span_s", "start", "key", "shard"),
                        name="breakdown_bucket_key",
                    ),
                ],
            },
        ),
        migrations.AddField(
            model_name="deliveryrecord",
            name="channel",
            field=models.CharField(blank=True, db_default="", max_length=100),
        ),
        migrations.AddField(
            model_name="deliveryrecord",
            name="courier_id",
            field=models.CharField(blank=True, db_default="", max_length=200),
        ),
    ]
