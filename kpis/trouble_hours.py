"""Hourly trouble counters: `stockouts`, `negative_stock` and `below_reorder_point` at any
past whole hour from a few rows (`StockTroubleHour`), kept by every writer.

What a pair counts as just before a whole hour H (`trouble_before`): its level is its latest
`StockCheckpoint` at or before H (the sums of its movements before H; none: no level, 0 and 0);
negative when on hand < 0; below when it has a level, a reorder point (today's) and available
below it; a stockout when available <= 0 and it has an order line in [H - 30 days, H). This
changes only at the hours of its checkpoints, at the hour after each of its order lines and at
the hour after each line's 30 days end. A pair's steps (`StockTroubleStep`) are its changes at
those hours; the counters are the sums of every pair's steps per site and hour (and day).

A write dated at t changes a pair's steps from the hour after t on: the writer recomputes them
from there (its checkpoints from there, its order lines from an hour before, the latest
checkpoint and line before that), replaces them and adds the difference to the counters, in
its transaction, holding the pair's level lock (`rollups_movements_record`). A change of
reorder point recomputes the pair's whole history. `kpis.as_of` reads the counts at T's hour
and recomputes only the pairs whose state can differ between that hour and T.
"""

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Iterator

from django.db import connection
from django.db.models import Q

from core.db import datetime_param, pg_int_array
from kpis.buckets import bulk_insert, upsert_add, writer_shard
from kpis.checkpoints import CHECKPOINT_S, checkpoint_after
from kpis.models import ALL_SITES, OrderLineRecord, StockCheckpoint
from kpis.stock_status import TROUBLE_COUNT_FIELDS, reorder_points
from kpis.trouble_tables import StockTroubleHour, StockTroubleStep
from kpis.units import EPOCH, instant
from kpis.windows import DEMAND_LOOKBACK
from ledger.models import SiteReorderPoint, Sku

DAY_S = 86400
NOTHING = (0, 0, 0)
# Recompute a pair's whole history from here (a change of reorder point, a rebuild).
SINCE_ALL = int(dt.datetime(1899, 12, 31, tzinfo=dt.UTC).timestamp())
REBUILD_CHUNK = 20000


def trouble_of(
    *, has_level: bool, on_hand: int, available: int, reorder_point: int | None, demand: bool
) -> tuple[int, int, int]:
    """(negative, below, stockout) as 0 or 1: the same judgement as the stock KPIs of now."""
    return (
        int(on_hand < 0),
        int(has_level and reorder_point is not None and available < reorder_point),
        int(available <= 0 and demand),
    )


def pair_steps(
    *,
    since: int,
    prior_checkpoint: tuple[int, int] | None,
    checkpoints: list[tuple[int, int, int]],
    prior_line: int | None,
    lines: list[int],
    reorder_point: int | None,
) -> dict[int, tuple[int, int, int]]:
    """One pair's steps at the hours >= `since` (epoch s of a whole hour): `prior_checkpoint`
    is its latest checkpoint (on hand, reserved) before `since`, `checkpoints` (at s, on hand,
    reserved) those from `since` on, `prior_line` its latest order line (epoch µs) before
    `since - 1 h`, `lines` its order lines (epoch µs) from then on."""
    lines = sorted(lines)
    line_hours = [_hour_after_us(line) for line in lines]
    expiries = [_hour_after_us(line + LOOKBACK_US) for line in lines]
    if prior_line is not None:
        expiries.append(_hour_after_us(prior_line + LOOKBACK_US))
    breaks = sorted(
        {at for at, _, _ in checkpoints}
        | {hour for hour in (*line_hours, *expiries) if hour >= since}
    )
    steps = {}
    state = prior_checkpoint
    checkpoints = sorted(checkpoints)
    next_checkpoint, checkpoint_count = 0, len(checkpoints)
    latest_line, line_index, line_count = prior_line, 0, len(lines)
    before = _trouble_at(since - CHECKPOINT_S, state, latest_line, reorder_point)
    for hour in breaks:
        while next_checkpoint < checkpoint_count and checkpoints[next_checkpoint][0] <= hour:
            state = checkpoints[next_checkpoint][1:]
            next_checkpoint += 1
        while line_index < line_count and line_hours[line_index] <= hour:
            latest_line, line_index = lines[line_index], line_index + 1
        now = _trouble_at(hour, state, latest_line, reorder_point)
        if now != before:
            steps[hour] = (now[0] - before[0], now[1] - before[1], now[2] - before[2])
        before = now
    return steps


LOOKBACK_US = int(DEMAND_LOOKBACK.total_seconds()) * 1_000_000
HOUR_US = CHECKPOINT_S * 1_000_000


def _hour_after_us(moment_us: int) -> int:
    """`checkpoints.checkpoint_after` of an instant in epoch µs: the end of its hour (s)."""
    return (moment_us // HOUR_US) * CHECKPOINT_S + CHECKPOINT_S


def _epoch_us(moment: dt.datetime) -> int:
    return (moment - EPOCH) // dt.timedelta(microseconds=1)


def _trouble_at(hour: int, state, latest_line, reorder_point) -> tuple[int, int, int]:
    """`trouble_of` just before the whole hour `hour` (epoch s)."""
    if state is None:
        on_hand = available = 0
    else:
        on_hand, reserved = state
        available = on_hand - reserved
    demand = latest_line is not None and latest_line >= hour * 1_000_000 - LOOKBACK_US
    return (
        int(on_hand < 0),
        int(state is not None and reorder_point is not None and available < reorder_point),
        int(available <= 0 and demand),
    )


def counts_add(counts: defaultdict, site_id: int, hour: int, step, sign: int = 1) -> None:
    """Add a pair's step at `hour` to the counters of its site and of all sites."""
    negative, below, stockouts = step
    for scope in (site_id, ALL_SITES):
        for span in (CHECKPOINT_S, DAY_S):
            row = counts[(scope, span, hour - hour % span)]
            row[0] += sign * negative
            row[1] += sign * below
            row[2] += sign * stockouts


def trouble_steps_refresh(since_by_pair: dict[tuple[int, int], int]) -> None:
    """Recompute these pairs' steps from their hour (epoch s) on and add the difference to the
    counters. Caller is in the writing transaction, after its checkpoints and order lines are
    written, and holds the pairs' level locks. Only the pairs whose steps changed are
    rewritten (most writes change no pair's trouble)."""
    if not since_by_pair:
        return
    items = sorted(since_by_pair.items())
    inputs = _inputs_read(items)
    counts: defaultdict = defaultdict(lambda: [0, 0, 0])
    changed, new_rows = [], []
    for pair, since in items:
        given, stored = inputs[pair]
        steps = pair_steps(since=since, **given)
        if steps == stored:
            continue
        changed.append((pair, since))
        site_id = pair[0]
        for hour, old in stored.items():
            counts_add(counts, site_id, hour, old, -1)
        for hour, step in steps.items():
            counts_add(counts, site_id, hour, step)
            new_rows.append([*pair, instant(hour), *step])
    if not changed:
        return
    _steps_replace(changed, new_rows)
    rows = [(key, values) for key, values in counts.items() if any(values)]
    if rows:
        shard = writer_shard()
        upsert_add(
            StockTroubleHour,
            ("site_id", "span_s", "start", "shard"),
            TROUBLE_COUNT_FIELDS,
            [((*key, shard), values) for key, values in rows],
        )


def _inputs_read(items: list[tuple[tuple[int, int], int]]) -> dict:
    """Each pair's inputs of `pair_steps` and its stored steps from its hour on."""
    # PostgreSQL reads the reorder points in the same statement (`REORDER_POINT` rows).
    points = {} if connection.vendor == "postgresql" else reorder_points(dict(items).keys())
    inputs = {
        pair: (
            {
                "prior_checkpoint": None,
                "checkpoints": [],
                "prior_line": None,
                "lines": [],
                "reorder_point": points.get(pair),
            },
            {},
        )
        for pair, _ in items
    }
    for kind, site_id, sku_id, at_us, on_hand, reserved, *step in _input_rows(items):
        given, stored = inputs[(site_id, sku_id)]
        if kind == CHECKPOINT:
            given["checkpoints"].append((at_us // 1_000_000, on_hand, reserved))
        elif kind == PRIOR_CHECKPOINT:
            given["prior_checkpoint"] = (on_hand, reserved)
        elif kind == LINE:
            given["lines"].append(at_us)
        elif kind == PRIOR_LINE:
            given["prior_line"] = at_us
        elif kind == REORDER_POINT:
            given["reorder_point"] = on_hand
        else:
            stored[at_us // 1_000_000] = tuple(step)
    return inputs


# The kinds of `_input_rows`.
PRIOR_CHECKPOINT, CHECKPOINT, PRIOR_LINE, LINE, STEP, REORDER_POINT = range(6)


def _input_rows(items) -> Iterator[tuple]:
    """Rows (kind, site, sku, at, on hand, reserved, *step) of every pair's inputs."""
    if connection.vendor == "postgresql":
        yield from _input_rows_pg(items)
        return
    for (site_id, sku_id), since in items:  # SQLite: one writer at a time, a few pairs
        of_pair = Q(site_id=site_id, sku_id=sku_id)
        since_at, line_from = instant(since), instant(since - CHECKPOINT_S)
        checkpoints = StockCheckpoint.objects.filter(of_pair)
        prior = checkpoints.filter(at__lt=since_at).order_by("-at").first()
        if prior is not None:
            yield (PRIOR_CHECKPOINT, site_id, sku_id, 0, prior.on_hand, prior.reserved)
        for at, on_hand, reserved in checkpoints.filter(at__gte=since_at).values_list(
            "at", "on_hand", "reserved"
        ):
            yield (CHECKPOINT, site_id, sku_id, _epoch_us(at), on_hand, reserved)
        lines = OrderLineRecord.objects.filter(of_pair)
        prior_line = lines.filter(occurred_at__lt=line_from).order_by("-occurred_at").first()
        if prior_line is not None:
            yield (PRIOR_LINE, site_id, sku_id, _epoch_us(prior_line.occurred_at), 0, 0)
        for moment in lines.filter(occurred_at__gte=line_from).values_list(
            "occurred_at", flat=True
        ):
            yield (LINE, site_id, sku_id, _epoch_us(moment), 0, 0)
        for at, *step in StockTroubleStep.objects.filter(of_pair, at__gte=since_at).values_list(
            "at", *TROUBLE_COUNT_FIELDS
        ):
            yield (STEP, site_id, sku_id, _epoch_us(at), 0, 0, *step)


def _input_rows_pg(items) -> Iterator[tuple]:
    """The same in one statement for all pairs: each part one index walk per pair."""
    checkpoints = StockCheckpoint._meta.db_table
    lines = OrderLineRecord._meta.db_table
    steps = StockTroubleStep._meta.db_table
    of_pair = "t.site_id = u.site_id AND t.sku_id = u.sku_id"
    since = "to_timestamp(u.since)"
    us = "(extract(epoch FROM {}) * 1000000)::bigint"
    line_from = f"to_timestamp(u.since - {CHECKPOINT_S})"
    sql = (
        "WITH u (site_id, sku_id, since) AS (SELECT * FROM unnest("  # noqa: S608
        "%s::bigint[], %s::bigint[], %s::bigint[])) "
        f"SELECT {PRIOR_CHECKPOINT}, u.site_id, u.sku_id, 0, p.on_hand, p.reserved, 0, 0, 0 "
        f"FROM u CROSS JOIN LATERAL (SELECT t.at, t.on_hand, t.reserved FROM {checkpoints} t "
        f"WHERE {of_pair} AND t.at < {since} ORDER BY t.at DESC LIMIT 1) p "
        f"UNION ALL SELECT {CHECKPOINT}, u.site_id, u.sku_id, {us.format('t.at')}, t.on_hand, "
        "t.reserved, 0, 0, 0 "
        f"FROM u JOIN {checkpoints} t ON {of_pair} AND t.at >= {since} "
        f"UNION ALL SELECT {PRIOR_LINE}, u.site_id, u.sku_id, {us.format('p.occurred_at')}, "
        "0, 0, 0, 0, 0 "
        f"FROM u CROSS JOIN LATERAL (SELECT t.occurred_at FROM {lines} t WHERE {of_pair} "
        f"AND t.occurred_at < {line_from} ORDER BY t.occurred_at DESC LIMIT 1) p "
        f"UNION ALL SELECT {LINE}, u.site_id, u.sku_id, {us.format('t.occurred_at')}, "
        "0, 0, 0, 0, 0 "
        f"FROM u JOIN {lines} t ON {of_pair} AND t.occurred_at >= {line_from} "
        f"UNION ALL SELECT {STEP}, u.site_id, u.sku_id, {us.format('t.at')}, 0, 0, "
        f"{', '.join(f't.{name}' for name in TROUBLE_COUNT_FIELDS)} "
        f"FROM u JOIN {steps} t ON {of_pair} AND t.at >= {since} "
        f"UNION ALL SELECT {REORDER_POINT}, u.site_id, u.sku_id, 0, CASE WHEN own.id IS NULL "
        "THEN sku.reorder_point ELSE own.reorder_point END, 0, 0, 0, 0 "
        f"FROM u LEFT JOIN {Sku._meta.db_table} sku ON sku.id = u.sku_id "
        f"LEFT JOIN {SiteReorderPoint._meta.db_table} own "
        "ON own.site_id = u.site_id AND own.sku_id = u.sku_id"
    )
    columns = [pg_int_array(values) for values in zip(*((*p, s) for p, s in items), strict=True)]
    with connection.cursor() as cursor:
        cursor.execute(sql, columns)
        yield from cursor.fetchall()


def _steps_replace(items, new_rows: list[list]) -> None:
    table = StockTroubleStep._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                f"DELETE FROM {table} t USING unnest(%s::bigint[], %s::bigint[], "  # noqa: S608
                "%s::bigint[]) AS u (site_id, sku_id, since) WHERE t.site_id = u.site_id "
                "AND t.sku_id = u.sku_id AND t.at >= to_timestamp(u.since)",
                [pg_int_array(values) for values in zip(*((*p, s) for p, s in items), strict=True)],
            )
        else:
            for (site_id, sku_id), since in items:
                cursor.execute(
                    f"DELETE FROM {table} WHERE site_id = %s AND sku_id = %s AND at >= %s",  # noqa: S608
                    [site_id, sku_id, datetime_param(instant(since))],
                )
    bulk_insert(StockTroubleStep, ["site_id", "sku_id", "at", *TROUBLE_COUNT_FIELDS], new_rows)


def trouble_hours_rebuild(scope: Q) -> int:
    """Write the steps and the sites' counters of the pairs in `scope` (a Q on site_id) again
    from the checkpoints (rebuilt first) and the order lines; the caller sums the all-sites
    counters again. Caller holds the rebuild's transaction and table locks. Returns the steps
    written."""
    StockTroubleStep.objects.filter(scope).delete()
    StockTroubleHour.objects.filter(scope).delete()
    StockTroubleHour.objects.filter(site_id=ALL_SITES).delete()
    checkpoints: dict[tuple[int, int], list] = defaultdict(list)
    for site_id, sku_id, at, on_hand, reserved in (
        StockCheckpoint.objects.filter(scope)
        .order_by()
        .values_list("site_id", "sku_id", "at", "on_hand", "reserved")
        .iterator(chunk_size=REBUILD_CHUNK)
    ):
        checkpoints[(site_id, sku_id)].append((int(at.timestamp()), on_hand, reserved))
    lines: dict[tuple[int, int], list] = defaultdict(list)
    for site_id, sku_id, moment in (
        OrderLineRecord.objects.filter(scope)
        .order_by()
        .values_list("site_id", "sku_id", "occurred_at")
        .iterator(chunk_size=REBUILD_CHUNK)
    ):
        lines[(site_id, sku_id)].append(_epoch_us(moment))
    points = reorder_points(set(checkpoints) | set(lines))
    counts: defaultdict = defaultdict(lambda: [0, 0, 0])
    step_rows = []
    for pair in sorted(set(checkpoints) | set(lines)):
        steps = pair_steps(
            since=SINCE_ALL,
            prior_checkpoint=None,
            checkpoints=checkpoints.get(pair, []),
            prior_line=None,
            lines=lines.get(pair, []),
            reorder_point=points.get(pair),
        )
        for hour, step in steps.items():
            step_rows.append([*pair, instant(hour), *step])
            counts_add(counts, pair[0], hour, step)
    bulk_insert(StockTroubleStep, ["site_id", "sku_id", "at", *TROUBLE_COUNT_FIELDS], step_rows)
    _hours_insert(counts)
    return len(step_rows)


def _hours_insert(counts: dict) -> None:
    """Insert the sites' counters (shard 0); the rebuild sums the all-sites rows from them."""
    rows: Iterable = (
        [site, span, instant(start), 0, *values]
        for (site, span, start), values in sorted(counts.items())
        if any(values) and site != ALL_SITES
    )
    bulk_insert(
        StockTroubleHour, ["site_id", "span_s", "start", "shard", *TROUBLE_COUNT_FIELDS], rows
    )


def counts_statement(site_id: int | None, hour: int) -> tuple[str, list]:
    """The counts (negative, below, stockouts) of a site or all sites just before the whole
    hour `hour`: the day rows before its day and the hour rows of its day up to it."""
    table = StockTroubleHour._meta.db_table
    day = hour - hour % DAY_S
    sql = (
        f"SELECT {', '.join(f'COALESCE(SUM({name}), 0)' for name in TROUBLE_COUNT_FIELDS)} "  # noqa: S608
        f"FROM {table} WHERE site_id = %s AND ((span_s = %s AND start < %s) "
        "OR (span_s = %s AND start >= %s AND start <= %s))"
    )
    params = [
        ALL_SITES if site_id is None else site_id,
        DAY_S,
        datetime_param(instant(day)),
        CHECKPOINT_S,
        datetime_param(instant(day)),
        datetime_param(instant(hour)),
    ]
    return sql, params


def trouble_reorder_point_changed(*, sku_id: int, site_id: int | None = None) -> None:
    """Recompute the whole history of a SKU's pairs (at one site or all) after a change of its
    reorder point: `below_reorder_point` at every past instant uses today's."""
    scope = Q(sku_id=sku_id) if site_id is None else Q(sku_id=sku_id, site_id=site_id)
    sites = set(StockCheckpoint.objects.filter(scope).values_list("site_id", flat=True).distinct())
    sites |= set(OrderLineRecord.objects.filter(scope).values_list("site_id", flat=True).distinct())
    trouble_steps_refresh({(site, sku_id): SINCE_ALL for site in sites})


def since_by_pair(moments: Iterable[tuple[int, int, dt.datetime]]) -> dict[tuple[int, int], int]:
    """The first hour each pair's steps change at, for writes `(site, sku, occurred_at)`."""
    since: dict[tuple[int, int], int] = {}
    for site_id, sku_id, moment in moments:
        hour = checkpoint_after(moment)
        pair = (site_id, sku_id)
        if pair not in since or hour < since[pair]:
            since[pair] = hour
    return since
