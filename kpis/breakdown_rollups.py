"""The delivery KPIs broken down by channel and by courier, kept like the other rollups: the
writers fold their deliveries here in their transaction (`rollups_facts_record`), and
`rollups_rebuild` folds every stored delivery again.

Per (dimension, key, site, minute): deliveries, accurate deliveries, shipping cost (e4), and
the fulfillment-time histogram (the same bins as `FulfillmentBin`), spread over the minute,
hour and day buckets of the site and of all sites (`BreakdownBucket`, `BreakdownBin`).
"""

from collections import defaultdict
from collections.abc import Iterable

from kpis.buckets import upsert_add, writer_shard
from kpis.models import (
    ALL_SITES,
    BIN_COUNT_FIELDS,
    BINS_PER_ROW,
    BreakdownBin,
    BreakdownBucket,
    BreakdownDimension,
)
from kpis.units import SPANS, minute_of

BREAKDOWN_FIELDS = ("deliveries", "accurate_deliveries", "shipping_cost_e4")
BUCKET_KEY_FIELDS = ("dimension", "site_id", "span_s", "start", "key", "shard")
BIN_KEY_FIELDS = ("dimension", "site_id", "span_s", "start", "key", "bin_group", "shard")
_CHANNEL, _COURIER = BreakdownDimension.CHANNEL.value, BreakdownDimension.COURIER.value


class Breakdowns:
    """Folded deliveries: `sums[(dimension, key, site_id, minute)]` and
    `bins[(dimension, key, site_id, minute, bin)]`."""

    __slots__ = ("bins", "sums")

    def __init__(self) -> None:
        self.sums: defaultdict = defaultdict(lambda: [0] * len(BREAKDOWN_FIELDS))
        self.bins: defaultdict = defaultdict(int)


def breakdowns_new() -> Breakdowns:
    return Breakdowns()


def breakdowns_fold(breakdowns: Breakdowns, rows: Iterable[tuple]) -> None:
    """Add deliveries `(site_id, occurred_at, accurate, shipping_cost_e4, bin, channel,
    courier_id)` under their channel and their courier (bin None: creation unknown)."""
    sums, bins = breakdowns.sums, breakdowns.bins
    for site_id, occurred_at, accurate, shipping_cost_e4, duration_bin, channel, courier in rows:
        minute = minute_of(occurred_at)
        for dimension, key in ((_CHANNEL, channel), (_COURIER, courier)):
            values = sums[(dimension, key, site_id, minute)]
            values[0] += 1
            values[1] += 1 if accurate else 0
            values[2] += shipping_cost_e4
            if duration_bin is not None:
                bins[(dimension, key, site_id, minute, duration_bin)] += 1


def breakdown_bucket_rows(breakdowns: Breakdowns, *, all_sites: bool = True) -> dict:
    """Key (dimension, site, span, start, key) -> sums, over the site's buckets and (unless
    told otherwise) all sites'."""
    rows: dict = {}
    for (dimension, key, site_id, minute), values in breakdowns.sums.items():
        for scope in (site_id, ALL_SITES) if all_sites else (site_id,):
            for span in SPANS:
                row_key = (dimension, scope, span, minute - minute % span, key)
                row = rows.setdefault(row_key, [0] * len(BREAKDOWN_FIELDS))
                for index, value in enumerate(values):
                    row[index] += value
    return rows


def breakdown_bin_rows(breakdowns: Breakdowns, *, all_sites: bool = True) -> dict:
    """Key (dimension, site, span, start, key, bin group) -> one count per bin column."""
    rows: dict = {}
    for (dimension, key, site_id, minute, duration_bin), count in breakdowns.bins.items():
        group, column = divmod(duration_bin, BINS_PER_ROW)
        for scope in (site_id, ALL_SITES) if all_sites else (site_id,):
            for span in SPANS:
                row_key = (dimension, scope, span, minute - minute % span, key, group)
                row = rows.get(row_key)
                if row is None:
                    row = rows[row_key] = [0] * BINS_PER_ROW
                row[column] += count
    return rows


def breakdowns_add(breakdowns: Breakdowns) -> None:
    """Add the folded deliveries to the breakdown rollups, on this writer's shard. Caller is
    inside the writing transaction."""
    if not breakdowns.sums:
        return
    shard = writer_shard()
    upsert_add(
        BreakdownBucket,
        BUCKET_KEY_FIELDS,
        BREAKDOWN_FIELDS,
        [((*key, shard), values) for key, values in breakdown_bucket_rows(breakdowns).items()],
    )
    bin_rows = breakdown_bin_rows(breakdowns)
    if bin_rows:
        upsert_add(
            BreakdownBin,
            BIN_KEY_FIELDS,
            BIN_COUNT_FIELDS,
            [((*key, shard), counts) for key, counts in bin_rows.items()],
        )
