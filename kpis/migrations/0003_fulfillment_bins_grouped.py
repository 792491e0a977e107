"""Sixteen adjacent fulfillment-time bins per `FulfillmentBin` row (one column each).

A 30-day window read one row per bin and bucket (about 5,500 rows, scattered over the table,
at 200,000 orders a month); grouped, it reads about a sixteenth as many rows. Existing rows
are regrouped in place, so no `rebuild_kpis` is needed.
"""

from django.db import migrations, models

BINS_PER_ROW = 16  # as kpis.models.BINS_PER_ROW at this migration

# Floor division and its remainder in SQL that PostgreSQL and SQLite agree on (both truncate
# towards zero; the bin -1, negative durations, belongs to group -1, column 15).
COLUMN = f"(((bin % {BINS_PER_ROW}) + {BINS_PER_ROW}) % {BINS_PER_ROW})"
GROUP = f"((bin - {COLUMN}) / {BINS_PER_ROW})"
# fulfillment_bin() never gives -2: it marks the regrouped rows until the old ones are gone.
REGROUPED = -2
COUNTS = ", ".join(f"count_{column}" for column in range(BINS_PER_ROW))
SUMS = ", ".join(
    f"SUM(CASE WHEN {COLUMN} = {column} THEN count ELSE 0 END)" for column in range(BINS_PER_ROW)
)
# Only constants of this module are interpolated.
REGROUP = [
    "INSERT INTO dashboards_fulfillmentbin "  # noqa: S608
    f"(site_id, span_s, start, shard, bin, count, bin_group, {COUNTS}) "
    f"SELECT site_id, span_s, start, shard, {REGROUPED}, 0, {GROUP}, {SUMS} "
    f"FROM dashboards_fulfillmentbin GROUP BY site_id, span_s, start, shard, {GROUP}",
    f"DELETE FROM dashboards_fulfillmentbin WHERE bin <> {REGROUPED}",  # noqa: S608
]


class Migration(migrations.Migration):
    dependencies = [
        ("dashboards", "0002_rollup_tables_fillfactor"),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name="fulfillmentbin",
            name="fulfillment_bin_key",
        ),
        migrations.AddField(
            model_name="fulfillmentbin",
            name="bin_group",
            field=models.IntegerField(default=0),
            preserve_default=False,
        ),
        *(
            migrations.AddField(
                model_name="fulfillmentbin",
                name=f"count_{column}",
                field=models.BigIntegerField(default=0),
            )
            for column in range(BINS_PER_ROW)
        ),
        migrations.RunSQL(REGROUP, reverse_sql=migrations.RunSQL.noop, elidable=False),
        migrations.RemoveField(
            model_name="fulfillmentbin",
            name="bin",
        ),
        migrations.RemoveField(
            model_name="fulfillmentbin",
            name="count",
        ),
        migrations.AddConstraint(
            model_name="fulfillmentbin",
            constraint=models.UniqueConstraint(
                fields=("site_id", "span_s", "start", "bin_group", "shard"),
                name="fulfillment_bin_group_key",
            ),
        ),
    ]
