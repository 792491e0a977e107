"""The tables of the hourly trouble counters (`kpis.trouble_hours`): the stock KPIs at any
past whole hour from a few rows. Imported by `kpis.models`, whose app they belong to."""

from django.db import models


class TroubleCounts(models.Model):
    """The trouble counts of a site (0: all sites) in a bucket, on one writer's shard."""

    site_id = models.BigIntegerField()
    span_s = models.IntegerField()
    start = models.DateTimeField()
    shard = models.SmallIntegerField(default=0)
    negative_stock = models.BigIntegerField(default=0)
    below_reorder_point = models.BigIntegerField(default=0)
    stockouts = models.BigIntegerField(default=0)

    class Meta:
        abstract = True


class StockTroubleHour(TroubleCounts):
    """How the trouble counts of a site (0: all sites) change at whole hours, by event time.

    `span_s = 3600`: the change at the hour boundary `start` of the number of pairs with
    negative stock, below their reorder point (today's) and out of stock (available <= 0 with
    an order line in the 30 days before), each pair as it stood just before `start`
    (`kpis.trouble_hours.trouble_before`). `span_s = 86400`: the sum of a day's hourly changes,
    so that the counts at an hour H, the sum of every change at or before H, take one row per
    day before H's day and one per hour of it. Sharded like the other rollups; readers sum the
    shards. Kept by every writer from the pairs' `StockTroubleStep` rows, rebuilt by
    `rebuild_kpis`.
    """

    class Meta:
        app_label = "dashboards"
        constraints = [
            # No storable-time check: an expiry 30 days after a late order line may lie past
            # the last storable instant; reads only compare it.
            models.UniqueConstraint(
                fields=["site_id", "span_s", "start", "shard"], name="stock_trouble_hour_key"
            ),
        ]

    def __str__(self) -> str:
        return f"site {self.site_id} span {self.span_s}s at {self.start:%Y-%m-%d %H:%M}"


class StockTroubleStep(models.Model):
    """One pair's own change (-1, 0 or 1 each) of the trouble counts at a whole hour: what the
    pair adds to `StockTroubleHour`. Kept so that a writer replaces the pair's steps from the
    first hour its write changes and adds the difference to the counters."""

    site_id = models.BigIntegerField()
    sku_id = models.BigIntegerField()
    at = models.DateTimeField()
    negative_stock = models.SmallIntegerField(default=0)
    below_reorder_point = models.SmallIntegerField(default=0)
    stockouts = models.SmallIntegerField(default=0)

    class Meta:
        app_label = "dashboards"
        constraints = [
            models.UniqueConstraint(
                fields=["site_id", "sku_id", "at"], name="stock_trouble_step_key"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.site_id}/{self.sku_id} at {self.at:%Y-%m-%d %H:%M}"
