"""Stock levels and the stock KPIs at a past instant T (`as_of`), by event time.

A pair's level at T is its latest `StockCheckpoint` at or before T (the sums of its movements
before that hour boundary) plus its movements from the start of the hour holding T up to T
included. A read costs one index probe per pair of the scope (its latest checkpoint; for the
KPIs also whether it had demand in the 30 days up to T) and the scope's movements of at most
one hour, whatever the length of the ledger or how far back T lies (docs/as_of.md).

A pair has a level at T when it has a movement at or before T (reservations are movements).
Reorder points are today's: their history is not kept.
"""

import datetime as dt
import json
from dataclasses import dataclass
from decimal import Decimal

from django.db import connection

from core.db import datetime_param, pg_int_array
from kpis.checkpoints import checkpoint_at_or_before
from kpis.models import OrderLineRecord, SnapshotRecord, StockCheckpoint, StockStatus
from kpis.trouble_hours import counts_statement, trouble_of
from kpis.units import instant
from kpis.windows import DEMAND_LOOKBACK, rows_of
from ledger.models import Movement, Site, SiteReorderPoint, Sku, StockLevel


@dataclass(frozen=True)
class LevelAt:
    on_hand: int
    reserved: int
    has_level: bool
    reorder_point: int | None = None
    had_demand: bool = False

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved


def _scope_sql(site_id: int | None, sku_id: int | None, prefix: str = "") -> tuple[str, list]:
    clauses, params = [], []
    if site_id is not None:
        clauses.append(f"{prefix}site_id = %s")
        params.append(site_id)
    if sku_id is not None:
        clauses.append(f"{prefix}sku_id = %s")
        params.append(sku_id)
    return " AND ".join(clauses) or "1 = 1", params


def _pairs_statement(
    site_id: int | None,
    sku_id: int | None,
    at: dt.datetime,
    *,
    with_demand: bool,
    pairs: tuple[str, list] | None = None,
    hour: dt.datetime | None = None,
) -> tuple[str, list]:
    """Each pair of the scope (those with a stock level now, and those known only from
    demand; or those of `pairs`, a SELECT of (site_id, sku_id)) with its latest checkpoint at
    or before `at`; with `with_demand`, its effective reorder point (today's) and whether it
    had an order line in (at - 30 days, at], and with `hour` also whether it had one in
    [hour - 30 days, hour), as the hourly trouble counters judge a pair just before it."""
    checkpoints = StockCheckpoint._meta.db_table
    scope, scope_params = _scope_sql(site_id, sku_id)
    moment = datetime_param(at)
    demand_columns, demand_joins, demand_params = "", "", []
    if with_demand:
        windows = [(">", datetime_param(at - DEMAND_LOOKBACK), "<=", moment)]
        if hour is not None:
            hour_moment = datetime_param(hour)
            windows.append((">=", datetime_param(hour - DEMAND_LOOKBACK), "<", hour_moment))
        demand_columns = (
            ", CASE WHEN own.id IS NULL THEN sku.reorder_point ELSE own.reorder_point END"
        )
        demand_joins = (
            f" LEFT JOIN {Sku._meta.db_table} sku ON sku.id = pairs.sku_id "
            f"LEFT JOIN {SiteReorderPoint._meta.db_table} own "
            "ON own.site_id = pairs.site_id AND own.sku_id = pairs.sku_id"
        )
        for index, (low, low_moment, high, high_moment) in enumerate(windows):
            line = (
                f"SELECT 1 AS found FROM {OrderLineRecord._meta.db_table} line "  # noqa: S608
                "WHERE line.site_id = pairs.site_id AND line.sku_id = pairs.sku_id "
                f"AND line.occurred_at {low} %s AND line.occurred_at {high} %s"
            )
            demand_params += [low_moment, high_moment]
            if connection.vendor == "postgresql":
                # One probe of the (site, SKU, time) index per pair. (As an EXISTS in the
                # select list, PostgreSQL hashed every order line of the 30 days instead:
                # 0.6 s for 1,200 pairs at 1,000,000 movements.)
                demand_columns += f", demand_{index}.found IS NOT NULL"
                demand_joins += f" LEFT JOIN LATERAL ({line} LIMIT 1) demand_{index} ON true"
            else:
                demand_columns += f", EXISTS ({line})"
    latest = (
        f"SELECT latest.id, latest.on_hand, latest.reserved FROM {checkpoints} latest "  # noqa: S608
        "WHERE latest.site_id = pairs.site_id AND latest.sku_id = pairs.sku_id "
        "AND latest.at <= %s ORDER BY latest.at DESC LIMIT 1"
    )
    if connection.vendor == "postgresql":
        # One backward index probe per pair. (Joined on `id = (subquery)`, PostgreSQL hashed
        # the whole checkpoint table instead: 1.2 s for one site at 1,000,000 movements.)
        checkpoint_join = f"LEFT JOIN LATERAL ({latest}) checkpoint ON true"
    else:  # SQLite has no LATERAL; it runs the subquery per pair as written
        checkpoint_join = (
            f"LEFT JOIN {checkpoints} checkpoint ON checkpoint.id = ("  # noqa: S608
            f"SELECT latest.id FROM {checkpoints} latest WHERE latest.site_id = pairs.site_id "
            "AND latest.sku_id = pairs.sku_id AND latest.at <= %s ORDER BY latest.at DESC LIMIT 1)"
        )
    if pairs is None:
        pairs = (
            f"SELECT site_id, sku_id FROM {StockLevel._meta.db_table} WHERE {scope} UNION "  # noqa: S608
            f"SELECT site_id, sku_id FROM {StockStatus._meta.db_table} WHERE {scope}",
            [*scope_params, *scope_params],
        )
    # Only table names and fixed clauses are interpolated; values are parameters.
    sql = (
        "SELECT pairs.site_id, pairs.sku_id, checkpoint.on_hand, checkpoint.reserved"  # noqa: S608
        f"{demand_columns} FROM ({pairs[0]}) pairs {checkpoint_join}{demand_joins}"
    )
    if connection.vendor == "postgresql":
        return sql, [*pairs[1], moment, *demand_params]
    return sql, [*demand_params, *pairs[1], moment]


def _recent_statement(site_id: int | None, sku_id: int | None, at: dt.datetime):
    """The scope's movement sums per pair from the hour boundary at or before `at` to `at`."""
    scope, scope_params = _scope_sql(site_id, sku_id)
    sql = (
        "SELECT site_id, sku_id, SUM(on_hand_delta), SUM(reserved_delta) "  # noqa: S608
        f"FROM {Movement._meta.db_table} WHERE {scope} "
        "AND occurred_at >= %s AND occurred_at <= %s GROUP BY site_id, sku_id"
    )
    hour_start = instant(checkpoint_at_or_before(at))
    return sql, [*scope_params, datetime_param(hour_start), datetime_param(at)]


def _snapshots_statement(site_id: int | None, at: dt.datetime) -> tuple[str, list]:
    """The lines of the latest snapshot at or before `at` of each site of the scope."""
    snapshots = SnapshotRecord._meta.db_table
    sites_clause = "" if site_id is None else " WHERE site.id = %s"
    sql = (
        f"SELECT site_id, lines FROM {snapshots} WHERE id IN ("  # noqa: S608
        f"SELECT (SELECT latest.id FROM {snapshots} latest WHERE latest.site_id = site.id "
        "AND latest.occurred_at <= %s ORDER BY latest.occurred_at DESC, latest.id DESC LIMIT 1) "
        f"FROM {Site._meta.db_table} site{sites_clause})"
    )
    return sql, [datetime_param(at), *([] if site_id is None else [site_id])]


def _levels_fold(pair_rows, recent_rows, *, with_demand: bool) -> dict[tuple[int, int], LevelAt]:
    recent = {
        (site_id, sku_id): (int(on_hand), int(reserved))
        for site_id, sku_id, on_hand, reserved in recent_rows
    }
    levels = {}
    for site_id, sku_id, on_hand, reserved, *demand in pair_rows:
        pair = (site_id, sku_id)
        has_level = on_hand is not None or pair in recent
        moved_on_hand, moved_reserved = recent.get(pair, (0, 0))
        point, had_demand = demand[:2] if with_demand else (None, False)
        levels[pair] = LevelAt(
            on_hand=(on_hand or 0) + moved_on_hand,
            reserved=(reserved or 0) + moved_reserved,
            has_level=has_level,
            reorder_point=point,
            had_demand=bool(had_demand),
        )
    return levels


def levels_at(
    *, at: dt.datetime, site_id: int | None = None, sku_id: int | None = None
) -> dict[tuple[int, int], LevelAt]:
    """The stock level at `at` of every pair of the scope that had one then."""
    pair_rows, recent_rows = rows_of(
        [
            _pairs_statement(site_id, sku_id, at, with_demand=False),
            _recent_statement(site_id, sku_id, at),
        ]
    )
    levels = _levels_fold(pair_rows, recent_rows, with_demand=False)
    return {pair: level for pair, level in levels.items() if level.has_level}


def worst_stockouts_at(*, site_id: int | None, at: dt.datetime, limit: int) -> list[tuple]:
    """The stockouts at `at` with the lowest available first: (site_id, sku_id, available,
    reorder point), as the worst stockouts of the trends give them for now."""
    pair_rows, recent_rows = rows_of(
        [
            _pairs_statement(site_id, None, at, with_demand=True),
            _recent_statement(site_id, None, at),
        ]
    )
    levels = _levels_fold(pair_rows, recent_rows, with_demand=True)
    worst = sorted(
        (level.available, pair)
        for pair, level in levels.items()
        if level.had_demand and level.available <= 0
    )[:limit]
    return [(*pair, available, levels[pair].reorder_point) for available, pair in worst]


def _changed_pairs(site_id: int | None, hour: dt.datetime, at: dt.datetime):
    """The pairs of the scope whose trouble may differ between just before `hour` (the whole
    hour at or before `at`) and `at`: those with a movement or an order line in [hour, at],
    and those whose order line of [hour - 30 days, at - 30 days] may drop out of the
    look-back. Every other pair counts as it did just before `hour`."""
    scope, scope_params = _scope_sql(site_id, None)
    lookback = [hour - DEMAND_LOOKBACK, at - DEMAND_LOOKBACK]
    sql = (
        f"SELECT site_id, sku_id FROM {Movement._meta.db_table} WHERE {scope} "  # noqa: S608
        "AND occurred_at >= %s AND occurred_at <= %s UNION "
        f"SELECT site_id, sku_id FROM {OrderLineRecord._meta.db_table} WHERE {scope} AND ("
        "(occurred_at >= %s AND occurred_at <= %s) OR (occurred_at >= %s AND occurred_at <= %s))"
    )
    moments = [datetime_param(moment) for moment in (hour, at, hour, at, *lookback)]
    return sql, [*scope_params, *moments[:2], *scope_params, *moments[2:]]


def _snapshot_pairs(snapshot_rows) -> tuple[str, list] | None:
    """A SELECT of the pairs the snapshot lines compare."""
    pairs = sorted(
        {(site, line[0]) for site, snapshot_lines in snapshot_rows for line in snapshot_lines}
    )
    if not pairs:
        return None
    if connection.vendor == "postgresql":  # two array parameters, whatever the lines
        return (
            "SELECT * FROM unnest(%s::bigint[], %s::bigint[]) AS p (site_id, sku_id)",
            [pg_int_array(site for site, _ in pairs), pg_int_array(sku for _, sku in pairs)],
        )
    clauses, params = [], []
    for site in sorted({site for site, _ in pairs}):
        sku_ids = [sku for pair_site, sku in pairs if pair_site == site]
        clauses.append(f"(site_id = %s AND sku_id IN ({', '.join(['%s'] * len(sku_ids))}))")
        params.extend([site, *sku_ids])
    where = " OR ".join(clauses)
    return (
        f"SELECT site_id, sku_id FROM {StockLevel._meta.db_table} WHERE {where}",  # noqa: S608
        params,
    )


def _trouble(level: LevelAt) -> tuple[int, int, int]:
    return trouble_of(
        has_level=level.has_level,
        on_hand=level.on_hand,
        available=level.available,
        reorder_point=level.reorder_point,
        demand=level.had_demand,
    )


def stock_kpis_at(*, site_id: int | None, at: dt.datetime) -> dict:
    """`stockouts`, `negative_stock`, `below_reorder_point` and the reconciliation skew at
    `at`, as `kpis.reads` gives them for now.

    The counts are the hourly trouble counters just before the whole hour H at or before
    `at` (`kpis.trouble_hours`), corrected by the pairs whose state may have changed between
    H and `at` (`_changed_pairs`: at most an hour of movements and order lines, and the order
    lines leaving the look-back then), each judged at `at` and as the counters judged it. The
    skew compares each site's latest snapshot with the levels at `at` of its lines' pairs.
    """
    hour = instant(checkpoint_at_or_before(at))
    changed = _changed_pairs(site_id, hour, at)
    # A pair's latest checkpoint at or before `at` is its latest at or before `hour` (no whole
    # hour lies between them): one probe serves both judgements.
    count_rows, pair_rows, recent_rows, snapshot_rows = rows_of(
        [
            counts_statement(site_id, int(hour.timestamp())),
            _pairs_statement(site_id, None, at, with_demand=True, pairs=changed, hour=hour),
            _recent_statement(site_id, None, at),
            _snapshots_statement(site_id, at),
        ]
    )
    counts = [int(value) for value in count_rows[0]]
    then = _levels_fold(
        [(*row[:5], row[6]) for row in pair_rows], [], with_demand=True
    )  # checkpoint only, the demand of [hour - 30 days, hour)
    for pair, level in _levels_fold(pair_rows, recent_rows, with_demand=True).items():
        for index, (new, old) in enumerate(zip(_trouble(level), _trouble(then[pair]), strict=True)):
            counts[index] += new - old
    snapshots = [
        (site, json.loads(lines) if isinstance(lines, str) else lines)  # SQLite's JSON is text
        for site, lines in snapshot_rows
    ]
    levels = {}
    compared = _snapshot_pairs(snapshots)
    if compared is not None:
        (pair_rows,) = rows_of(
            [_pairs_statement(site_id, None, at, with_demand=False, pairs=compared)]
        )
        levels = _levels_fold(pair_rows, recent_rows, with_demand=False)
    lines = mismatched = units = 0
    for snapshot_site, snapshot_lines in snapshots:
        for sku_id, qty, _on_hand_when_applied in snapshot_lines:
            level = levels.get((snapshot_site, sku_id))
            on_hand = level.on_hand if level is not None and level.has_level else 0
            lines += 1
            mismatched += qty != on_hand
            units += abs(qty - on_hand)
    negative, below, stockouts = counts
    return {
        "stockouts": stockouts,
        "negative_stock": negative,
        "below_reorder_point": below,
        "reconciliation_skew": float(Decimal(mismatched) / Decimal(lines)) if lines else None,
        "reconciliation_skew_units": units if lines else None,
    }


AS_OF_EXAMPLE = "2026-03-01T14:05:00+00:00"
# The earliest instant a read goes back to: a 30-day window before it is still storable.
AS_OF_FLOOR = dt.datetime(1900, 2, 1, tzinfo=dt.UTC)


def as_of_parse(text: str, *, now: dt.datetime) -> dt.datetime:
    """The instant of an `as_of` parameter: ISO 8601 with a UTC offset, not after `now`.

    Raises ValueError saying what to fix. A '+' of the offset that reached us as a space (an
    unencoded '+' in a query string) is read as the '+' it was.
    """
    raw = text.strip()
    if len(raw) > 6 and raw[-6] == " " and raw[-5:-3].isdigit() and raw[-3] == ":":
        raw = raw[:-6] + "+" + raw[-5:]
    try:
        moment = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(
            f"as_of must be an ISO 8601 date and time with a UTC offset, such as "
            f"{AS_OF_EXAMPLE}; got {text[:60]!r}"
        ) from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(
            f"as_of needs a UTC offset (Z, +00:00, -05:00 ...), such as {AS_OF_EXAMPLE}; "
            f"got {text[:60]!r}"
        )
    if moment > now:
        raise ValueError(
            f"as_of must not be in the future: got {text[:60]!r}, and it is now "
            f"{now.astimezone(dt.UTC).isoformat(timespec='seconds')}"
        )
    if moment < AS_OF_FLOOR:
        raise ValueError(f"as_of must be on or after {AS_OF_FLOOR.isoformat()}; got {text[:60]!r}")
    return moment
