"""Rebuilding every rollup from the ledger and the stored facts (`rebuild_kpis`)."""

import datetime as dt
import itertools
from collections import defaultdict
from collections.abc import Callable, Sequence

from django.db import connection, transaction
from django.db.models import Q

from kpis.breakdown_rollups import (
    BREAKDOWN_FIELDS,
    breakdown_bin_rows,
    breakdown_bucket_rows,
    breakdowns_fold,
    breakdowns_new,
)
from kpis.buckets import (
    bin_rows_spread,
    bucket_rows_spread,
    bulk_insert,
    deliveries_fold,
    movements_fold,
    revaluations_fold,
    revaluations_insert,
    sums_new,
)
from kpis.checkpoints import checkpoints_rebuild
from kpis.costs import CostBook
from kpis.demand import demand_rebuild
from kpis.models import (
    ALL_SITES,
    BIN_COUNT_FIELDS,
    BreakdownBin,
    BreakdownBucket,
    DeliveryRecord,
    DemandBucket,
    FulfillmentBin,
    KpiBucket,
    OrderLineRecord,
    RestockState,
    RestockWindow,
    Revaluation,
    StockCheckpoint,
    StockStatus,
    StockTroubleCount,
)
from kpis.restock_state import restock_rebuild
from kpis.stock_status import TROUBLE_COUNT_FIELDS, trouble_add, trouble_of_state
from kpis.trouble_hours import trouble_hours_rebuild
from kpis.trouble_tables import StockTroubleHour, StockTroubleStep
from kpis.units import FIELDS, ORDERS, instant, minute_of
from ledger.models import (
    Movement,
    SiteReorderPoint,
    Sku,
    StockLevel,
)

REBUILD_CHUNK = 20000
# Steps a room above runs first, in the rebuild's transaction, to complete the stored facts
# from what it holds (ingest: the channel and courier of old deliveries). Registered from its
# AppConfig.ready, so the read model imports nothing above it; each returns counts to report.
REBUILD_PREPARERS: dict[str, Callable[..., dict[str, int]]] = {}


def rebuild_preparer_register(name: str, prepare: Callable[..., dict[str, int]]) -> None:
    """`prepare(site_id=None or one site's id)` runs first in every rebuild."""
    REBUILD_PREPARERS[name] = prepare


def rollups_rebuild(
    *, site_id: int | None = None, progress: Callable[[str, int, int], None] | None = None
) -> dict[str, int]:
    """Recompute every rollup (of one site, or all) from the ledger and the stored facts.

    Runs in one transaction and locks the rollup tables against writers meanwhile (they wait,
    then add what they wrote on top, so nothing is lost or counted twice).
    """
    progress = progress or (lambda stage, done, total: None)
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "LOCK TABLE "
                    + ", ".join(
                        model._meta.db_table
                        for model in (
                            KpiBucket,
                            FulfillmentBin,
                            Revaluation,
                            StockStatus,
                            StockTroubleCount,
                            DemandBucket,
                            BreakdownBucket,
                            BreakdownBin,
                            StockCheckpoint,
                            StockTroubleHour,
                            StockTroubleStep,
                            RestockState,
                            RestockWindow,
                        )
                    )
                    + " IN EXCLUSIVE MODE"
                )
        scope = Q() if site_id is None else Q(site_id=site_id)
        # The all-sites rows are summed again from the sites' rows below.
        scope_and_all = Q() if site_id is None else Q(site_id__in=[site_id, ALL_SITES])
        KpiBucket.objects.filter(scope_and_all).delete()
        FulfillmentBin.objects.filter(scope_and_all).delete()
        Revaluation.objects.filter(scope).delete()
        StockStatus.objects.filter(scope).delete()
        StockTroubleCount.objects.filter(scope_and_all).delete()
        BreakdownBucket.objects.filter(scope_and_all).delete()
        BreakdownBin.objects.filter(scope_and_all).delete()

        sums = sums_new()
        bins: defaultdict = defaultdict(int)
        revaluations: list = []
        book = CostBook.load()
        movements = Movement.objects.filter(scope)
        total = movements.count()
        rows = movements.order_by().values_list(
            "site_id", "sku_id", "kind", "on_hand_delta", "occurred_at"
        )
        done = 0
        iterator = rows.iterator(chunk_size=REBUILD_CHUNK)
        while chunk := list(itertools.islice(iterator, REBUILD_CHUNK)):
            movements_fold(sums, chunk, book, revaluations)
            done += len(chunk)
            progress("movements", done, total)
        revaluations_fold(sums, revaluations)

        prepared = {name: prepare(site_id=site_id) for name, prepare in REBUILD_PREPARERS.items()}
        deliveries = DeliveryRecord.objects.filter(scope).order_by()
        breakdowns = breakdowns_new()
        delivery_rows = deliveries.values_list(
            "site_id",
            "occurred_at",
            "accurate",
            "shipping_cost_e4",
            "fulfillment_bin",
            "channel",
            "courier_id",
        ).iterator(chunk_size=REBUILD_CHUNK)
        while chunk := list(itertools.islice(delivery_rows, REBUILD_CHUNK)):
            deliveries_fold(sums, bins, chunk)
            breakdowns_fold(breakdowns, chunk)
        progress("deliveries", 1, 1)
        latest: dict[tuple[int, int], dt.datetime] = {}
        order_rows = (
            OrderLineRecord.objects.filter(scope)
            .order_by()
            .values_list("site_id", "sku_id", "occurred_at", "opens_order")
        )
        for line_site, sku_id, occurred_at, opens_order in order_rows.iterator(
            chunk_size=REBUILD_CHUNK
        ):
            if opens_order:
                sums[(line_site, minute_of(occurred_at))][ORDERS] += 1
            pair = (line_site, sku_id)
            if pair not in latest or latest[pair] < occurred_at:
                latest[pair] = occurred_at
        progress("order lines", 1, 1)

        buckets = bucket_rows_spread(sums, all_sites=False)
        # Rows go in in key order (here and in `_all_sites_sum`), so that a window's rows
        # share pages, as the writers' rows do (they arrive in time order): in the order the
        # ledger happened to be read, a 30-day window's histogram rows sat one to a page.
        bulk_insert(
            KpiBucket,
            ["site_id", "span_s", "start", "shard", *FIELDS],
            (
                [site, span, instant(start), 0, *values]
                for (site, span, start), values in sorted(buckets.items())
            ),
        )
        bulk_insert(
            FulfillmentBin,
            ["site_id", "span_s", "start", "bin_group", "shard", *BIN_COUNT_FIELDS],
            (
                [site, span, instant(start), group, 0, *counts]
                for (site, span, start, group), counts in sorted(bin_rows_spread(bins).items())
                if site != ALL_SITES
            ),
        )
        _breakdowns_insert(breakdowns)
        _all_sites_rows_sum()
        revaluations_insert(revaluations)
        progress("rollups", 1, 1)
        levels = StockLevel.objects.filter(scope).values_list(
            "site_id", "sku_id", "on_hand", "reserved"
        )
        status = {
            (level_site, sku_id): [True, on_hand, on_hand - reserved, None, None]
            for level_site, sku_id, on_hand, reserved in levels.iterator(chunk_size=REBUILD_CHUNK)
        }
        for pair, moment in latest.items():
            status.setdefault(pair, [False, 0, 0, None, None])[4] = moment
        for pair, point in _reorder_points_all(scope).items():
            if pair in status:
                status[pair][3] = point
        bulk_insert(
            StockStatus,
            [
                "site_id",
                "sku_id",
                "has_level",
                "on_hand",
                "available",
                "reorder_point",
                "last_order_line_at",
            ],
            ([site, sku, *state] for (site, sku), state in status.items()),
        )
        _trouble_counts_rebuild(status)
        progress("stock status", 1, 1)
        demand_buckets = demand_rebuild(site_id=site_id)
        restock_pairs = restock_rebuild(site_id=site_id)
        progress("restocking demand", 1, 1)
        checkpoints = checkpoints_rebuild(scope)
        progress("stock checkpoints", 1, 1)
        trouble_steps = trouble_hours_rebuild(scope)
        _all_sites_sum(StockTroubleHour, ("span_s", "start"), TROUBLE_COUNT_FIELDS)
        progress("hourly trouble counters", 1, 1)
    return {
        "movements": total,
        "buckets": len(buckets),
        "stock_levels": len(status),
        "stock_checkpoints": checkpoints,
        "trouble_steps": trouble_steps,
        "prepared": prepared,
        "demand_buckets": demand_buckets,
        "restock_pairs": restock_pairs,
    }


def _trouble_counts_rebuild(status: dict[tuple[int, int], list]) -> None:
    """Recount the trouble counters of these pairs' sites (their rows were deleted), then the
    all-sites rows as the sum of every site's."""
    counts: defaultdict = defaultdict(lambda: [0] * len(TROUBLE_COUNT_FIELDS))
    for (site_id, _sku_id), state in status.items():
        trouble_add(counts, site_id, trouble_of_state(state), 1)
    bulk_insert(
        StockTroubleCount,
        ["site_id", "span_s", "start", "shard", *TROUBLE_COUNT_FIELDS],
        (
            [site, span, instant(start), 0, *values]
            for (site, span, start), values in sorted(counts.items())
            if site != ALL_SITES and any(values)
        ),
    )
    _all_sites_sum(StockTroubleCount, ("span_s", "start"), TROUBLE_COUNT_FIELDS)


def _reorder_points_all(scope: Q) -> dict[tuple[int, int], int | None]:
    defaults = dict(Sku.objects.values_list("id", "reorder_point"))
    points = {
        pair: defaults.get(pair[1])
        for pair in StockLevel.objects.filter(scope).values_list("site_id", "sku_id")
    }
    for site, sku, point in SiteReorderPoint.objects.filter(scope).values_list(
        "site_id", "sku_id", "reorder_point"
    ):
        if (site, sku) in points:
            points[(site, sku)] = point
    return points


def _all_sites_rows_sum() -> None:
    """(Re)create the all-sites rows of the rollups as sums of the sites' rows."""
    _all_sites_sum(FulfillmentBin, ("span_s", "start", "bin_group"), BIN_COUNT_FIELDS)
    _all_sites_sum(KpiBucket, ("span_s", "start"), FIELDS)
    _all_sites_sum(BreakdownBucket, ("dimension", "span_s", "start", "key"), BREAKDOWN_FIELDS)
    _all_sites_sum(
        BreakdownBin, ("dimension", "span_s", "start", "key", "bin_group"), BIN_COUNT_FIELDS
    )


def _breakdowns_insert(breakdowns) -> None:
    """Insert the sites' breakdown rows (shard 0), in key order like the other rollups."""
    bulk_insert(
        BreakdownBucket,
        ["dimension", "site_id", "span_s", "start", "key", "shard", *BREAKDOWN_FIELDS],
        (
            [dimension, site, span, instant(start), key, 0, *values]
            for (dimension, site, span, start, key), values in sorted(
                breakdown_bucket_rows(breakdowns, all_sites=False).items()
            )
        ),
    )
    bulk_insert(
        BreakdownBin,
        ["dimension", "site_id", "span_s", "start", "key", "bin_group", "shard", *BIN_COUNT_FIELDS],
        (
            [dimension, site, span, instant(start), key, group, 0, *counts]
            for (dimension, site, span, start, key, group), counts in sorted(
                breakdown_bin_rows(breakdowns, all_sites=False).items()
            )
        ),
    )


def _all_sites_sum(model, key_fields: Sequence[str], value_fields: Sequence[str]) -> None:
    """Insert the all-sites rows (shard 0) of a rollup table as sums of the sites' rows."""
    table = model._meta.db_table
    keys = ", ".join(key_fields)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (site_id, {keys}, shard, {', '.join(value_fields)}) "  # noqa: S608
            f"SELECT %s, {keys}, 0, {', '.join(f'SUM({name})' for name in value_fields)} "
            f"FROM {table} WHERE site_id <> %s GROUP BY {keys} ORDER BY {keys}",
            [ALL_SITES, ALL_SITES],
        )
