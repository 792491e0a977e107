"""The restocking read model (`RestockState`, `RestockWindow`): kept by the ledger's writers in
their transaction, re-judged by catalog and site changes, moved along with time, rebuilt by
`rebuild_kpis`. `kpis.restock` reads it.

Demand is a sliding window, so a pair's stored `demand` counts from a fixed instant, the
window row's `start` (a multiple of `WINDOW_STEP_S`, at or before the start of every read's
28-day window): every dispatch or return dated at or after it, future ones included. A read at
`now` takes out, for the few pairs that have any, the movements dated from `start` up to
`now - 28 days` and those dated after `now` (`window_edges_sql`), so it answers exactly what
summing the 28 days would. `restock_window_advance` moves `start` up (taking out the demand of
the span it leaves) once it lags a step behind: after a ledger write's commit, or in a read
that finds it far behind (a quiet ledger).

Concurrency: every writer reads the window row `FOR SHARE` before it adds demand; moving the
window takes it `FOR UPDATE`, so it waits for the writers that counted from the old start and
the later ones count from the new one (SQLite runs one writer at a time anyway).
"""

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Iterable

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from core.db import datetime_param, pg_int_array
from kpis.demand import DEMAND_DAYS, DEMAND_KINDS, DEMAND_WINDOW
from kpis.models import RestockState, RestockWindow
from kpis.units import instant
from ledger.models import Movement, Site, SiteReorderPoint, Sku, StockLevel

logger = logging.getLogger(__name__)

WINDOW_STEP_S = 300  # the window's start moves in steps of 5 minutes
# A read moves the window itself only when no write did for this long (a quiet ledger).
READ_ADVANCE_LAG = dt.timedelta(hours=6)
STATE = RestockState._meta.db_table
WINDOW = RestockWindow._meta.db_table
STATE_BATCH = 200  # SQLite rows per statement (4 parameters each)


def judged_sql(available: str, point: str, demand: str, lead: str) -> dict[str, str]:
    """SQL of the judged columns from these SQL expressions (`kpis.restock.restock_line` says
    the same in Python): the cover as the division of two exact integers, correctly rounded
    as Python's `float(Fraction)` is."""
    available, point, demand, lead = (f"({sql})" for sql in (available, point, demand, lead))
    below = f"({point} IS NOT NULL AND {available} < {point})"
    return {
        "below_point": below,
        "cover": (
            f"CASE WHEN {demand} > 0 THEN "
            f"CAST({available} AS double precision) * {DEMAND_DAYS} / {demand} END"
        ),
        "needs": f"({below} OR ({demand} > 0 AND {available} * {DEMAND_DAYS} < {lead} * {demand}))",
    }


def step_floor(moment: dt.datetime) -> dt.datetime:
    seconds = int(moment.timestamp())
    return instant(seconds - seconds % WINDOW_STEP_S)


def window_read(*, for_share: bool = False) -> tuple[dt.datetime, int] | None:
    """(start, default lead days) of the window row, None if there is none."""
    lock = " FOR SHARE" if for_share and connection.vendor == "postgresql" else ""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT start, lead_default FROM {WINDOW} WHERE id = 1{lock}")  # noqa: S608
        row = cursor.fetchone()
    return None if row is None else (moment_of(row[0]), row[1])


def moment_of(value) -> dt.datetime:
    """A timestamp as raw SQL returns it (SQLite: text, naive UTC), aware."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value.replace(tzinfo=dt.UTC) if timezone.is_naive(value) else value


def _window_for_writer() -> tuple[dt.datetime, int]:
    window = window_read(for_share=True)
    if window is not None:
        return window
    # A new (or emptied) database: demand counts from the window of a read made now.
    start = step_floor(timezone.now() - DEMAND_WINDOW)
    RestockWindow.objects.bulk_create(
        [RestockWindow(id=1, start=start, lead_default=settings.RESTOCK_LEAD_DAYS)],
        ignore_conflicts=True,
    )
    return window_read(for_share=True)


# --- the writers -----------------------------------------------------------------------------


def restock_movements_record(
    movements: Iterable[tuple], levels: dict[tuple[int, int], tuple[int, int]]
) -> None:
    """Fold ledger movements `(site_id, sku_id, kind, on_hand_delta, occurred_at)` and the
    levels they left into the pairs' rows. Caller is inside the writing transaction and holds
    the levels' row locks."""
    if not levels:
        return
    start, lead_default = _window_for_writer()
    demand: defaultdict = defaultdict(int)
    for site_id, sku_id, kind, delta, occurred_at in movements:
        if kind in DEMAND_KINDS and occurred_at >= start:
            demand[(site_id, sku_id)] -= delta  # a dispatch takes units out, a return adds
    rows = [
        (site_id, sku_id, on_hand - reserved, demand.get((site_id, sku_id), 0))
        for (site_id, sku_id), (on_hand, reserved) in sorted(levels.items())
    ]
    _state_upsert(rows, lead_default)
    if start < step_floor(timezone.now() - DEMAND_WINDOW):
        transaction.on_commit(restock_window_advance)


def _state_upsert(rows: list[tuple[int, int, int, int]], lead_default: int) -> None:
    """Upsert (site_id, sku_id, available, demand to add) rows, their codes, reorder points and
    lead times joined from the catalog."""
    point = "CASE WHEN own.id IS NULL THEN k.reorder_point ELSE own.reorder_point END"
    lead = f"COALESCE(s.restock_lead_days, {int(lead_default)})"
    fresh = judged_sql("u.available", point, "u.demand", lead)
    total = f"{STATE}.demand + excluded.demand"
    again = judged_sql("excluded.available", "excluded.reorder_point", total, "excluded.lead_days")
    body = (
        f"INSERT INTO {STATE} (site_id, sku_id, site_code, sku_code, available, reorder_point, "  # noqa: S608
        "lead_days, demand, below_point, cover, needs) "
        f"SELECT u.site_id, u.sku_id, s.code, k.code, u.available, {point}, {lead}, u.demand, "
        f"{fresh['below_point']}, {fresh['cover']}, {fresh['needs']} "
        f"FROM u JOIN {Site._meta.db_table} s ON s.id = u.site_id "
        f"JOIN {Sku._meta.db_table} k ON k.id = u.sku_id "
        f"LEFT JOIN {SiteReorderPoint._meta.db_table} own "
        "ON own.site_id = u.site_id AND own.sku_id = u.sku_id WHERE true "
        "ON CONFLICT (site_id, sku_id) DO UPDATE SET available = excluded.available, "
        "reorder_point = excluded.reorder_point, lead_days = excluded.lead_days, "
        "site_code = excluded.site_code, sku_code = excluded.sku_code, "
        f"demand = {total}, below_point = excluded.below_point, cover = {again['cover']}, "
        f"needs = {again['needs']}"
    )
    _with_rows("site_id, sku_id, available, demand", rows, body)


def _with_rows(columns: str, rows: list[tuple[int, ...]], statement: str) -> None:
    """Run `statement` with these integer rows as `u (columns)`: one statement of arrays on
    PostgreSQL, VALUES lists of `STATE_BATCH` rows on SQLite."""
    width = len(rows[0])
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            arrays = ", ".join(["%s::bigint[]"] * width)
            cursor.execute(
                f"WITH u ({columns}) AS (SELECT * FROM unnest({arrays})) {statement}",  # noqa: S608
                [pg_int_array(column) for column in zip(*rows, strict=True)],
            )
            return
        placeholder = "(" + ", ".join(["%s"] * width) + ")"
        for first in range(0, len(rows), STATE_BATCH):
            chunk = rows[first : first + STATE_BATCH]
            cursor.execute(
                f"WITH u ({columns}) AS (VALUES {', '.join([placeholder] * len(chunk))}) "
                f"{statement}",
                [value for row in chunk for value in row],
            )


def _demand_add(sums: dict[tuple[int, int], int]) -> None:
    """Add net demand to existing rows and judge them again (the window moved)."""
    rows = sorted((site_id, sku_id, units) for (site_id, sku_id), units in sums.items() if units)
    if not rows:
        return
    total = f"{STATE}.demand + u.units"
    judged = judged_sql(f"{STATE}.available", f"{STATE}.reorder_point", total, "lead_days")
    sets = f"demand = {total}, cover = {judged['cover']}, needs = {judged['needs']}"
    _with_rows(
        "site_id, sku_id, units",
        rows,
        f"UPDATE {STATE} SET {sets} FROM u "  # noqa: S608
        f"WHERE {STATE}.site_id = u.site_id AND {STATE}.sku_id = u.sku_id",
    )


def _net_demand(moments: dict, site_id: int | None = None) -> dict[tuple[int, int], int]:
    """Net units dispatched minus returned per pair among the movements matching `moments`
    (lookups on `occurred_at`)."""
    movements = Movement.objects.filter(kind__in=DEMAND_KINDS, **moments)
    if site_id is not None:
        movements = movements.filter(site_id=site_id)
    net: defaultdict = defaultdict(int)
    for pair_site, sku_id, delta in movements.order_by().values_list(
        "site_id", "sku_id", "on_hand_delta"
    ):
        net[(pair_site, sku_id)] -= delta
    return dict(net)


# --- time, the catalog and the sites -----------------------------------------------------------


def restock_window_advance(now: dt.datetime | None = None) -> bool:
    """Move the window's start up to the step before `now - 28 days` (and judge every row again
    with the deployment's default lead time if it changed); return whether anything moved.
    In its own transaction; a failure is logged and left for the next time (reads stay exact
    whatever the start)."""
    # Never ahead of the clock: a read asked about a later instant must not move it there.
    now = min(now or timezone.now(), timezone.now())
    target = step_floor(now - DEMAND_WINDOW)
    try:
        with transaction.atomic():
            lock = " FOR UPDATE" if connection.vendor == "postgresql" else ""
            with connection.cursor() as cursor:
                cursor.execute(f"SELECT id FROM {WINDOW} WHERE id = 1{lock}")  # noqa: S608
                if cursor.fetchone() is None:
                    return False
            start, lead_default = window_read()
            moved = start < target
            if moved:
                gone = _net_demand({"occurred_at__gte": start, "occurred_at__lt": target})
                _demand_add({pair: -units for pair, units in gone.items()})
                RestockWindow.objects.filter(id=1).update(start=target)
            if lead_default != settings.RESTOCK_LEAD_DAYS:
                _leads_judge(site_id=None, lead_default=settings.RESTOCK_LEAD_DAYS)
                RestockWindow.objects.filter(id=1).update(lead_default=settings.RESTOCK_LEAD_DAYS)
                moved = True
            return moved
    except DatabaseError:
        logger.exception("restocking window not moved (the next write or read tries again)")
        return False


def _leads_judge(*, site_id: int | None, lead_default: int) -> None:
    """Set the lead time of the rows (of one site, or all) from their sites, and judge them."""
    lead = (
        f"COALESCE((SELECT s.restock_lead_days FROM {Site._meta.db_table} s "  # noqa: S608
        f"WHERE s.id = {STATE}.site_id), {int(lead_default)})"
    )
    judged = judged_sql("available", "reorder_point", "demand", lead)
    where, params = ("", []) if site_id is None else (" WHERE site_id = %s", [site_id])
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {STATE} SET lead_days = {lead}, needs = {judged['needs']}{where}",  # noqa: S608
            params,
        )


def restock_site_changed(site: Site) -> None:
    """A site's code or lead time may have changed: its rows follow. In the saver's
    transaction."""
    window = window_read(for_share=True)
    if window is None:
        return
    RestockState.objects.filter(site_id=site.pk).exclude(site_code=site.code).update(
        site_code=site.code
    )
    _leads_judge(site_id=site.pk, lead_default=window[1])


def restock_sku_changed(sku: Sku) -> None:
    """A SKU's code may have changed: its rows follow."""
    RestockState.objects.filter(sku_id=sku.pk).exclude(sku_code=sku.code).update(sku_code=sku.code)


def restock_reorder_points_refresh(*, sku_id: int, site_id: int | None = None) -> None:
    """A SKU's reorder point (or a site's own for it) changed: set the rows' effective point
    (the site's own, else the SKU's) and judge them again. In the saver's transaction."""
    point = (
        f"COALESCE((SELECT own.reorder_point FROM {SiteReorderPoint._meta.db_table} own "  # noqa: S608
        f"WHERE own.site_id = {STATE}.site_id AND own.sku_id = {STATE}.sku_id), "
        f"(SELECT k.reorder_point FROM {Sku._meta.db_table} k WHERE k.id = {STATE}.sku_id))"
    )
    judged = judged_sql("available", "reorder_point", "demand", "lead_days")
    where = "sku_id = %s" + ("" if site_id is None else " AND site_id = %s")
    params = [sku_id] + ([] if site_id is None else [site_id])
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {STATE} SET reorder_point = {point} WHERE {where}", params)  # noqa: S608
        cursor.execute(
            f"UPDATE {STATE} SET below_point = {judged['below_point']}, "  # noqa: S608
            f"needs = {judged['needs']} WHERE {where}",
            params,
        )


# --- rebuild --------------------------------------------------------------------------------


def restock_rebuild(
    *, site_id: int | None = None, now: dt.datetime | None = None, start: dt.datetime | None = None
) -> int:
    """Recompute the rows (of one site, or all) from the ledger; return how many. Caller is
    inside the rebuild's transaction.

    A rebuild of every site also sets the window: from `start` if given, else from the step
    before 28 days before the latest movement (or now, if earlier), so that reads made at the
    ledger's time all use it.
    """
    now = now or timezone.now()
    window = window_read()
    if site_id is None or window is None:
        if start is None:
            latest = Movement.objects.order_by("-occurred_at").values_list("occurred_at", flat=True)
            start = step_floor(min(now, latest.first() or now) - DEMAND_WINDOW)
        lead_default = settings.RESTOCK_LEAD_DAYS
        RestockWindow.objects.all().delete()
        RestockWindow.objects.create(id=1, start=start, lead_default=lead_default)
    else:
        start, lead_default = window
    levels = (
        StockLevel.objects.all() if site_id is None else StockLevel.objects.filter(site_id=site_id)
    )
    RestockState.objects.filter(**({} if site_id is None else {"site_id": site_id})).delete()
    demand = _net_demand({"occurred_at__gte": start}, site_id=site_id)
    rows = [
        (pair_site, sku_id, on_hand - reserved, demand.get((pair_site, sku_id), 0))
        for pair_site, sku_id, on_hand, reserved in levels.order_by().values_list(
            "site_id", "sku_id", "on_hand", "reserved"
        )
    ]
    rows.sort()
    for first in range(0, len(rows), 20000):
        _state_upsert(rows[first : first + 20000], lead_default)
    return len(rows)


def window_edges_sql(site_id: int | None) -> tuple[str, list]:
    """SQL (and its parameters but the instants) of the net demand per pair of the movements
    a read takes out of the stored demand: dated from the window's start up to the read's
    window start (`%(start)s`, inclusive), or after its `now`. Parameters: window start, read
    start, now."""
    site = "" if site_id is None else "site_id = %s AND "
    sql = (
        "SELECT site_id, sku_id, CAST(-SUM(on_hand_delta) AS bigint) AS units FROM "  # noqa: S608
        f"{Movement._meta.db_table} WHERE {site}kind IN (%s, %s) AND "
        "((occurred_at >= %s AND occurred_at <= %s) OR occurred_at > %s) GROUP BY site_id, sku_id"
    )
    return sql, ([] if site_id is None else [site_id]) + list(DEMAND_KINDS)


def instants_params(*moments: dt.datetime) -> list:
    return [datetime_param(moment) for moment in moments]
