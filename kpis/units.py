"""The units of the rollups: spans and fields, money in 1/10,000, minutes, fulfillment bins."""

import datetime as dt
import functools
from decimal import ROUND_HALF_EVEN, Decimal

from ledger.models import (
    MovementKind,
)

SPANS = (60, 3600, 86400)
TOTAL_SPAN = 0  # the all-time bucket of a site, at the epoch
FIELDS = (
    "cogs_e4",
    "value_change_e4",
    "deliveries",
    "accurate_deliveries",
    "shipping_cost_e4",
    "counts",
    "mismatches",
    "mismatch_units",
    "mismatch_value_e4",
    "orders_created",
)
(
    COGS,
    VALUE,
    DELIVERIES,
    ACCURATE,
    SHIPPING,
    COUNTS,
    MISMATCHES,
    MISMATCH_UNITS,
    MISMATCH_VALUE,
    ORDERS,
) = range(len(FIELDS))
UPSERT_BATCH = 1000
ROLLUP_SHARDS = 8
ROLLUP_SHARD_LOCK_CLASS = 470_417  # advisory lock namespace of the rollup shards
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
COGS_KINDS = frozenset({MovementKind.ORDER_DISPATCHED.value, MovementKind.ORDER_RETURNED.value})
COUNTED = MovementKind.COUNTED.value


# --- units ----------------------------------------------------------------------------------


def money_e4(amount: Decimal) -> int:
    """Money as an integer of 1/10,000 (standard costs have 4 decimal places)."""
    return int((Decimal(amount) * 10000).to_integral_value(ROUND_HALF_EVEN))


def money_from_e4(amount_e4: int) -> Decimal:
    return Decimal(amount_e4).scaleb(-4)


def minute_of(moment: dt.datetime) -> int:
    """Epoch second at which the minute holding `moment` starts."""
    return int(moment.timestamp() // 60) * 60


@functools.lru_cache(maxsize=65536)
def instant(epoch_s: int) -> dt.datetime:
    return EPOCH + dt.timedelta(seconds=epoch_s)


FULFILLMENT_BIN_BITS = 5  # 32 bins per doubling of the duration


def fulfillment_bin(duration_us: int) -> int:
    """A duration's histogram bin: 32 bins per doubling, in integer arithmetic so that bins are
    exactly monotonic (a larger duration never lands in a lower bin).

    Finer bins mean fewer delivery rows to read in the bin holding a percentile, but more
    histogram counts per bucket (16 to a `FulfillmentBin` row): 32 keeps the rows read to a few
    hundred and the delivery rows to a few thousand at 200,000 orders a month.
    """
    if duration_us < 0:
        return -1
    bits = duration_us.bit_length()
    mantissa = FULFILLMENT_BIN_BITS + 1
    if bits <= mantissa:
        return duration_us
    return (bits << FULFILLMENT_BIN_BITS) | (
        (duration_us >> (bits - mantissa)) & ((1 << FULFILLMENT_BIN_BITS) - 1)
    )
