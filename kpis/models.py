"""KPI facts and rollups. Written only by `kpis.rollups`; read by `kpis.reads`.

Money is kept as integers of 1/10,000 of the currency (`*_e4`): standard costs have 4 decimal
places, so every product and sum is exact on PostgreSQL and on SQLite alike (SQLite would turn
decimals into floats). `site_id` columns are plain integers, not foreign keys: rollup rows are
written by multi-row upserts in the writer's transaction, and 0 means "all sites" where noted.
"""

from django.db import models
from django.db.models import F, Q

from core.timechecks import storable_time_check
from kpis.restock_models import RestockState, RestockWindow  # noqa: F401 (the app's models)
from kpis.trouble_tables import (  # noqa: F401 (models of this app)
    StockTroubleHour,
    StockTroubleStep,
    TroubleCounts,
)

ALL_SITES = 0


class KpiBucket(models.Model):
    """Sums of KPI facts of one site over one time bucket, by event time.

    `span_s` is the bucket length: 60, 3600 or 86400 seconds, or 0 for the all-time total
    (`start` is then the epoch); every fact is added to its minute, hour and day bucket and to
    the total, so any window reads a bounded number of rows.
    """

    site_id = models.BigIntegerField()
    span_s = models.IntegerField()
    start = models.DateTimeField()
    # Concurrent writers add to different shards of a bucket, so that they never wait for each
    # other's row locks (see `rollups.writer_shard`); readers sum the shards.
    shard = models.SmallIntegerField(default=0)
    cogs_e4 = models.BigIntegerField(default=0)
    value_change_e4 = models.BigIntegerField(default=0)
    deliveries = models.BigIntegerField(default=0)
    accurate_deliveries = models.BigIntegerField(default=0)
    shipping_cost_e4 = models.BigIntegerField(default=0)
    counts = models.BigIntegerField(default=0)
    mismatches = models.BigIntegerField(default=0)
    mismatch_units = models.BigIntegerField(default=0)
    mismatch_value_e4 = models.BigIntegerField(default=0)
    orders_created = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            storable_time_check("start", name="kpi_bucket_start_storable"),
            models.UniqueConstraint(
                fields=["site_id", "span_s", "start", "shard"], name="kpi_bucket_key"
            ),
        ]
        indexes = [models.Index(fields=["span_s", "start"], name="kpi_bucket_span_start_idx")]

    def __str__(self) -> str:
        return f"site {self.site_id} span {self.span_s}s at {self.start:%Y-%m-%d %H:%M}"


# Fulfillment-time bins per `FulfillmentBin` row (bin = bin_group * BINS_PER_ROW + column).
BINS_PER_ROW = 16
BIN_COUNT_FIELDS = tuple(f"count_{column}" for column in range(BINS_PER_ROW))


class BinCounts(models.Model):
    """Sixteen adjacent fulfillment-time bins of a histogram row (`BIN_COUNT_FIELDS`)."""

    count_0 = models.BigIntegerField(default=0)
    count_1 = models.BigIntegerField(default=0)
    count_2 = models.BigIntegerField(default=0)
    count_3 = models.BigIntegerField(default=0)
    count_4 = models.BigIntegerField(default=0)
    count_5 = models.BigIntegerField(default=0)
    count_6 = models.BigIntegerField(default=0)
    count_7 = models.BigIntegerField(default=0)
    count_8 = models.BigIntegerField(default=0)
    count_9 = models.BigIntegerField(default=0)
    count_10 = models.BigIntegerField(default=0)
    count_11 = models.BigIntegerField(default=0)
    count_12 = models.BigIntegerField(default=0)
    count_13 = models.BigIntegerField(default=0)
    count_14 = models.BigIntegerField(default=0)
    count_15 = models.BigIntegerField(default=0)

    class Meta:
        abstract = True


class FulfillmentBin(BinCounts):
    """How many fulfillment times fell in each of 16 adjacent duration bins (`count_0` for bin
    `bin_group * 16`, ...), per site (0: all sites) and bucket.

    Percentiles are exact: these counts find the bin holding the wanted rank, then only that
    bin's rows of `DeliveryRecord` are read. Sixteen bins share a row so that a 30-day window
    reads a few hundred rows rather than one per bin and bucket (about 5,500 at 200,000 orders
    a month); the writers add to one column, so a row is still updated in place.
    """

    site_id = models.BigIntegerField()
    span_s = models.IntegerField()
    start = models.DateTimeField()
    bin_group = models.IntegerField()
    shard = models.SmallIntegerField(default=0)

    class Meta:
        constraints = [
            storable_time_check("start", name="fulfillment_bin_start_storable"),
            models.UniqueConstraint(
                fields=["site_id", "span_s", "start", "bin_group", "shard"],
                name="fulfillment_bin_group_key",
            ),
        ]

    def __str__(self) -> str:
        first = self.bin_group * BINS_PER_ROW
        return f"site {self.site_id} bins {first}+ at {self.start:%Y-%m-%d %H:%M}"


class DeliveryRecord(models.Model):
    """One `order.delivered` applied (append-only fact)."""

    site_id = models.BigIntegerField()
    occurred_at = models.DateTimeField()
    accurate = models.BooleanField()
    shipping_cost_e4 = models.BigIntegerField()
    order_created_at = models.DateTimeField(null=True)
    fulfillment_us = models.BigIntegerField(null=True)
    fulfillment_bin = models.IntegerField(null=True)
    # The order's channel as given in `order.created` ("" when none was given) and the
    # delivery's courier ("" for deliveries recorded before couriers were kept): the keys of
    # the `by=channel` and `by=courier` breakdowns.
    channel = models.CharField(max_length=100, blank=True, db_default="")
    courier_id = models.CharField(max_length=200, blank=True, db_default="")

    class Meta:
        constraints = [
            storable_time_check("occurred_at", name="delivery_occurred_at_storable"),
            storable_time_check(
                "order_created_at", name="delivery_order_created_at_storable", null=True
            ),
        ]
        indexes = [
            models.Index(fields=["occurred_at"], name="delivery_occurred_idx"),
            models.Index(
                fields=["fulfillment_bin", "occurred_at", "fulfillment_us"],
                name="delivery_bin_idx",
            ),
            models.Index(
                fields=["site_id", "fulfillment_bin", "occurred_at", "fulfillment_us"],
                name="delivery_site_bin_idx",
            ),
            # The k-th duration of a bin in a long window without sorting the bin's rows
            # (`kpis._order_statistics` walks these from the nearer end); the indexes above
            # serve short windows, whose rows are a small part of the bin.
            models.Index(
                fields=["fulfillment_bin", "fulfillment_us", "occurred_at"],
                name="delivery_bin_duration_idx",
            ),
            models.Index(
                fields=["site_id", "fulfillment_bin", "fulfillment_us", "occurred_at"],
                name="delivery_site_duration_idx",
            ),
            # The same walk for one channel's or courier's durations (`kpis.breakdowns`).
            models.Index(
                fields=["channel", "fulfillment_bin", "fulfillment_us", "occurred_at"],
                name="delivery_channel_duration_idx",
            ),
            models.Index(
                fields=["courier_id", "fulfillment_bin", "fulfillment_us", "occurred_at"],
                name="delivery_courier_duration_idx",
            ),
            # And for one site's: without the site in the index, the walk fetched every
            # site's rows of the key's bin from the table to filter them (50 ms for one site
            # and 30 days at 1,000,000 movements; 0.8 ms with these, index only).
            models.Index(
                fields=["channel", "site_id", "fulfillment_bin", "fulfillment_us", "occurred_at"],
                name="delivery_channel_site_idx",
            ),
            models.Index(
                fields=[
                    "courier_id",
                    "site_id",
                    "fulfillment_bin",
                    "fulfillment_us",
                    "occurred_at",
                ],
                name="delivery_courier_site_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"delivery at site {self.site_id}, {self.occurred_at:%Y-%m-%d %H:%M:%S}"


class BreakdownDimension(models.IntegerChoices):
    CHANNEL = 1, "channel"
    COURIER = 2, "courier"


class BreakdownBucket(models.Model):
    """Delivery sums of one channel or courier (`key`) at one site (0: all sites) over one
    minute, hour or day bucket, by event time: `KpiBucket`'s delivery columns, broken down.

    Sharded like `KpiBucket` (see `rollups.writer_shard`); readers sum the shards.
    """

    dimension = models.SmallIntegerField(choices=BreakdownDimension.choices)
    site_id = models.BigIntegerField()
    span_s = models.IntegerField()
    start = models.DateTimeField()
    key = models.CharField(max_length=200)
    shard = models.SmallIntegerField(default=0)
    deliveries = models.BigIntegerField(default=0)
    accurate_deliveries = models.BigIntegerField(default=0)
    shipping_cost_e4 = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            storable_time_check("start", name="breakdown_bucket_start_storable"),
            models.UniqueConstraint(
                fields=["dimension", "site_id", "span_s", "start", "key", "shard"],
                name="breakdown_bucket_key",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_dimension_display()} {self.key!r} site {self.site_id} at {self.start}"


class BreakdownBin(BinCounts):
    """`FulfillmentBin` of one channel or courier (`key`): the fulfillment-time histogram that
    finds a percentile's bin, whose `DeliveryRecord` rows of that key are then read."""

    dimension = models.SmallIntegerField(choices=BreakdownDimension.choices)
    site_id = models.BigIntegerField()
    span_s = models.IntegerField()
    start = models.DateTimeField()
    key = models.CharField(max_length=200)
    bin_group = models.IntegerField()
    shard = models.SmallIntegerField(default=0)

    class Meta:
        constraints = [
            storable_time_check("start", name="breakdown_bin_start_storable"),
            models.UniqueConstraint(
                fields=["dimension", "site_id", "span_s", "start", "key", "bin_group", "shard"],
                name="breakdown_bin_key",
            ),
        ]

    def __str__(self) -> str:
        first = self.bin_group * BINS_PER_ROW
        return f"{self.get_dimension_display()} {self.key!r} bins {first}+ at {self.start}"


class OrderLineRecord(models.Model):
    """One line of an `order.created` applied (append-only fact): demand for a (site, SKU)."""

    site_id = models.BigIntegerField()
    sku_id = models.BigIntegerField()
    occurred_at = models.DateTimeField()
    qty = models.BigIntegerField()
    order_id = models.CharField(max_length=200, blank=True)
    # The first line of its order in the writer's call: counts one order created.
    opens_order = models.BooleanField(default=True)

    class Meta:
        constraints = [
            storable_time_check("occurred_at", name="order_line_occurred_at_storable"),
        ]
        indexes = [
            models.Index(fields=["occurred_at"], name="order_line_occurred_idx"),
            # Whether a pair had demand in the 30 days before an instant (`kpis.as_of`).
            models.Index(fields=["site_id", "sku_id", "occurred_at"], name="order_line_pair_idx"),
        ]

    def __str__(self) -> str:
        return f"order line {self.order_id or '?'} {self.site_id}/{self.sku_id} x{self.qty}"


class SnapshotRecord(models.Model):
    """One `stock.snapshot` applied, compared with the ledger as it stood when applied."""

    site_id = models.BigIntegerField()
    occurred_at = models.DateTimeField()
    lines = models.JSONField(help_text="[[sku_id, snapshot qty, on_hand when applied], ...]")
    line_count = models.IntegerField()
    mismatched_lines = models.IntegerField()
    unit_difference = models.BigIntegerField()

    class Meta:
        constraints = [
            storable_time_check("occurred_at", name="snapshot_occurred_at_storable"),
        ]
        indexes = [
            models.Index(fields=["site_id", "occurred_at", "id"], name="snapshot_latest_idx"),
        ]

    def __str__(self) -> str:
        return f"snapshot of site {self.site_id} at {self.occurred_at:%Y-%m-%d %H:%M:%S}"


class UnitCostChange(models.Model):
    """A change of a SKU's standard cost, effective from `effective_at` (a whole minute)."""

    sku_id = models.BigIntegerField()
    effective_at = models.DateTimeField()
    old_cost_e4 = models.BigIntegerField()
    new_cost_e4 = models.BigIntegerField()
    recorded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["sku_id", "effective_at"], name="cost_change_sku_idx")]

    def __str__(self) -> str:
        return f"SKU {self.sku_id}: {self.old_cost_e4} -> {self.new_cost_e4} (e4)"


class Revaluation(models.Model):
    """Value change at a cost change's instant for stock held before it (derived; rebuilt)."""

    site_id = models.BigIntegerField()
    sku_id = models.BigIntegerField()
    occurred_at = models.DateTimeField()
    amount_e4 = models.BigIntegerField()

    class Meta:
        indexes = [models.Index(fields=["occurred_at"], name="revaluation_occurred_idx")]

    def __str__(self) -> str:
        return f"revaluation {self.site_id}/{self.sku_id} {self.amount_e4:+} (e4)"


# The pairs that can count as a stockout, negative stock or below their reorder point; the
# raw SQL of `kpis.reads` repeats it (`STOCK_TROUBLE_SQL`) so that the index serves it, and
# the writers deciding which rows to rewrite say it in Python (`in_stock_trouble`).
STOCK_TROUBLE = (
    Q(on_hand__lt=0) | Q(available__lte=0) | Q(available__lt=F("reorder_point"), has_level=True)
)
STOCK_TROUBLE_SQL = "(on_hand < 0 OR available <= 0 OR (available < reorder_point AND has_level))"


def in_stock_trouble(on_hand: int, available: int, reorder_point: int | None) -> bool:
    """`STOCK_TROUBLE` of a pair that has a stock level, in Python."""
    return (
        on_hand < 0 or available <= 0 or (reorder_point is not None and available < reorder_point)
    )


STOCK_TROUBLE_INDEX_FIELDS = (
    "last_order_line_at",
    "site_id",
    "sku_id",
    "on_hand",
    "available",
    "reorder_point",
    "has_level",
)


class StockStatus(models.Model):
    """The KPI engine's copy of each stock level's state, behind the "now" KPIs.

    The counts themselves are kept in `StockTroubleCount` by every writer of these rows.
    `has_level` is false for a pair known only from demand.
    """

    site_id = models.BigIntegerField()
    sku_id = models.BigIntegerField()
    has_level = models.BooleanField(default=True)
    on_hand = models.BigIntegerField(default=0)
    available = models.BigIntegerField(default=0)
    reorder_point = models.BigIntegerField(null=True)
    last_order_line_at = models.DateTimeField(null=True)
    # What the row's state before its last update counted as in `StockTroubleCount`, set by
    # that update itself (NULL on insert) so that its RETURNING gives the old state with the
    # new one: writers count the difference without reading the row first.
    was_negative = models.BooleanField(null=True)
    was_below = models.BooleanField(null=True)
    was_stockout_at = models.DateTimeField(null=True)

    class Meta:
        constraints = [
            storable_time_check(
                "last_order_line_at", name="stock_status_last_order_line_storable", null=True
            ),
            models.UniqueConstraint(fields=["site_id", "sku_id"], name="stock_status_pair"),
        ]
        indexes = [
            # One index over every pair in trouble (one index for the writers to maintain, not
            # three), led by the last order line time: the "now" counts come from
            # `StockTroubleCount`, and read here only the stockout candidates whose last order
            # line falls in the minute at the edge of the 30-day demand lookback; the worst
            # stockouts read the recent ones. Key columns rather than INCLUDE, which SQLite
            # does not have.
            models.Index(
                fields=list(STOCK_TROUBLE_INDEX_FIELDS),
                name="status_trouble_by_demand_idx",
                condition=STOCK_TROUBLE,
            ),
        ]

    def __str__(self) -> str:
        return f"{self.site_id}/{self.sku_id}: on_hand {self.on_hand}, available {self.available}"


class StockTroubleCount(TroubleCounts):
    """How many stock pairs are in trouble, per site (0: all sites): the "now" KPIs at the
    cost of a few rows, whatever the number of pairs in trouble.

    `span_s = 0` (`start` at the epoch): the pairs with negative stock and those below their
    reorder point, as `StockStatus` stands. `span_s` 60, 3600 or 86400: the stockout
    candidates (available <= 0, with an order line) whose last order line falls in that
    minute, hour or day bucket, so that a read counts those after `now - 30 days` from a
    bounded number of buckets. Every writer of `StockStatus` adds the difference its change
    makes (old state out, new state in) to its own shard's rows, in its transaction
    (`rollups.writer_shard`): concurrent writers never wait on each other's counter rows,
    and readers sum the shards. A shard's count may be negative; the sum is exact.
    Writers learn a row's old state from their own update (`StockStatus.was_*`).
    """

    class Meta:
        constraints = [
            storable_time_check("start", name="stock_trouble_count_start_storable"),
            models.UniqueConstraint(
                fields=["site_id", "span_s", "start", "shard"], name="stock_trouble_count_key"
            ),
        ]

    def __str__(self) -> str:
        return f"site {self.site_id} span {self.span_s}s at {self.start:%Y-%m-%d %H:%M}"


class DemandBucket(models.Model):
    """Units dispatched and returned of one (site, SKU) over one hour or day, by event time:
    the restocking demand of the last 28 days, read from a few dozen rows per pair instead of
    the movements (`kpis.demand`). Kept by the ledger's writers in their transaction, on their
    rollup shard (`buckets.writer_shard`); readers sum the shards. No all-sites rows: restock
    answers per pair.
    """

    site_id = models.BigIntegerField()
    sku_id = models.BigIntegerField()
    span_s = models.IntegerField()
    start = models.DateTimeField()
    shard = models.SmallIntegerField(default=0)
    dispatched = models.BigIntegerField(default=0)
    returned = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            storable_time_check("start", name="demand_bucket_start_storable"),
            # Led by site, span and start: one site's read is a range of this index.
            models.UniqueConstraint(
                fields=["site_id", "span_s", "start", "sku_id", "shard"], name="demand_bucket_key"
            ),
        ]
        indexes = [models.Index(fields=["span_s", "start"], name="demand_bucket_span_start_idx")]

    def __str__(self) -> str:
        return f"{self.site_id}/{self.sku_id} span {self.span_s}s at {self.start:%Y-%m-%d %H:%M}"


class StockCheckpoint(models.Model):
    """A stock level as it stood at a whole hour, by event time: the sums of the pair's
    movements with `occurred_at` before `at`.

    Kept only at the end of each hour in which the pair moved (one row per pair and active
    hour, at most one per movement), by every ledger write (`kpis.checkpoints`): a late
    movement adds its deltas to the pair's checkpoints after it. The level at an instant T is
    the pair's latest checkpoint at or before T plus its movements from the hour holding T
    up to T (`kpis.as_of`), whatever the length of the ledger.
    """

    site_id = models.BigIntegerField()
    sku_id = models.BigIntegerField()
    at = models.DateTimeField()
    on_hand = models.BigIntegerField()
    reserved = models.BigIntegerField()

    class Meta:
        constraints = [
            # No storable-time check: `at` is the hour after a movement's, which may lie an
            # hour past the last storable instant; reads only compare it.
            # Also the index of the reads: a pair's latest checkpoint at or before T.
            models.UniqueConstraint(
                fields=["site_id", "sku_id", "at"], name="stock_checkpoint_key"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.site_id}/{self.sku_id} at {self.at:%Y-%m-%d %H:%M}: {self.on_hand}"
