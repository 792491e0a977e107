"""Restocking demand: units dispatched and returned per (site, SKU), kept in hour and day
buckets (`DemandBucket`) by the ledger's writers, and read for the 28 days ending now.

A read sums the whole days and hours inside the window from the buckets, and takes the raw
movements only at its start: the shorter side of the window's start within its hour (at most
half an hour of dispatches and returns), plus, at its end, the movements dated after now in
the current hour (events dated in the future; normally none). So its cost depends on the
number of pairs, not on the number of movements in the 28 days.
"""

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable

from django.db import connection
from django.db.models import Q, Sum

from core.db import datetime_param
from kpis.buckets import bulk_insert, upsert_add, writer_shard
from kpis.models import DemandBucket
from kpis.units import instant
from ledger.models import Movement, MovementKind

DEMAND_DAYS = 28
DEMAND_WINDOW = dt.timedelta(days=DEMAND_DAYS)
HOUR, DAY = 3600, 86400
DISPATCHED = MovementKind.ORDER_DISPATCHED.value
RETURNED = MovementKind.ORDER_RETURNED.value
DEMAND_KINDS = (DISPATCHED, RETURNED)
VALUE_FIELDS = ("dispatched", "returned")
REBUILD_CHUNK = 20000


def _demand_sums(rows: Iterable[tuple]) -> dict[tuple[int, int, int, int], list[int]]:
    """Spread movements `(site_id, sku_id, kind, on_hand_delta, occurred_at)` of the demand
    kinds over their hour and day buckets: (site, SKU, span, start epoch s) -> [dispatched,
    returned]. A dispatch takes units out (negative delta), a return puts them back."""
    sums: dict[tuple[int, int, int, int], list[int]] = {}
    for site_id, sku_id, kind, delta, occurred_at in rows:
        if kind not in DEMAND_KINDS or not delta:
            continue
        moment = int(occurred_at.timestamp())
        column = 0 if kind == DISPATCHED else 1
        for span in (HOUR, DAY):
            key = (site_id, sku_id, span, moment - moment % span)
            values = sums.setdefault(key, [0, 0])
            values[column] += -delta if column == 0 else delta
    return sums


def demand_movements_record(rows: Iterable[tuple]) -> None:
    """Add the dispatches and returns among these ledger movements to the demand buckets.
    Caller is inside the writing transaction."""
    sums = _demand_sums(rows)
    if not sums:
        return
    shard = writer_shard()
    upsert_add(
        DemandBucket,
        ("site_id", "span_s", "start", "sku_id", "shard"),
        VALUE_FIELDS,
        [
            ((site, span, start, sku, shard), values)
            for (site, sku, span, start), values in sums.items()
        ],
    )


def demand_rebuild(*, site_id: int | None = None) -> int:
    """Recompute the demand buckets (of one site, or all) from the ledger; return how many.
    Caller is inside the rebuild's transaction and holds the table lock."""
    scope = Q() if site_id is None else Q(site_id=site_id)
    DemandBucket.objects.filter(scope).delete()
    movements = (
        Movement.objects.filter(scope, kind__in=DEMAND_KINDS)
        .order_by()
        .values_list("site_id", "sku_id", "kind", "on_hand_delta", "occurred_at")
    )
    sums = _demand_sums(movements.iterator(chunk_size=REBUILD_CHUNK))
    bulk_insert(
        DemandBucket,
        ["site_id", "sku_id", "span_s", "start", "shard", *VALUE_FIELDS],
        (
            [site, sku, span, instant(start), 0, *values]
            for (site, sku, span, start), values in sorted(sums.items())
        ),
    )
    return len(sums)


def _window_buckets(start_s: int, end_s: int) -> list[tuple[int, int, int]]:
    """(span, first start, end) runs of whole hour and day buckets covering [start_s, end_s),
    both whole hours: days where they fit, hours at the ends."""
    first_day = -(-start_s // DAY) * DAY
    last_day = end_s // DAY * DAY
    if first_day >= last_day:
        return [(HOUR, start_s, end_s)]
    return [(HOUR, start_s, first_day), (DAY, first_day, last_day), (HOUR, last_day, end_s)]


def demand_28d(*, site_id: int | None, now: dt.datetime) -> dict[tuple[int, int], int]:
    """Net units dispatched minus returned per (site, SKU) in the 28 days ending `now`, by
    event time: (now - 28 days, now]. Pairs with no such movement are left out; a pair whose
    returns exceed its dispatches is given its (negative) net: the caller floors it."""
    start = now - DEMAND_WINDOW
    start_s = int(start.timestamp())
    head_hour = start_s - start_s % HOUR
    now_s = int(now.timestamp())
    tail_end = now_s - now_s % HOUR + HOUR  # the hour holding `now` is read whole
    # The hour holding the start: read whole and take out its movements up to `start`, or
    # skip it and add its movements after `start`, whichever is fewer (see the docstring).
    head_from_bucket = start - instant(head_hour) < dt.timedelta(minutes=30)
    first_bucket = head_hour if head_from_bucket else head_hour + HOUR
    net: dict[tuple[int, int], int] = defaultdict(int)
    clauses, params = [], []
    for span, low, high in _window_buckets(first_bucket, tail_end):
        if low < high:
            clauses.append("(span_s = %s AND start >= %s AND start < %s)")
            params += [span, datetime_param(instant(low)), datetime_param(instant(high))]
    site_clause = "" if site_id is None else "site_id = %s AND "
    site_params = [] if site_id is None else [site_id]
    with connection.cursor() as cursor:
        # Raw SQL: the ORM builds this OR of ranges slower than the database runs it. Only
        # our table and column names are interpolated.
        cursor.execute(
            "SELECT site_id, sku_id, SUM(dispatched) - SUM(returned) "  # noqa: S608
            f"FROM {DemandBucket._meta.db_table} WHERE {site_clause}({' OR '.join(clauses)}) "
            "GROUP BY site_id, sku_id",
            site_params + params,
        )
        for pair_site, sku_id, units in cursor.fetchall():
            net[(pair_site, sku_id)] += int(units)
    if head_from_bucket:
        head = Q(occurred_at__gte=instant(head_hour), occurred_at__lte=start)
    else:
        head = Q(occurred_at__gt=start, occurred_at__lt=instant(head_hour + HOUR))
    tail = Q(occurred_at__gt=now, occurred_at__lt=instant(tail_end))
    edges = Movement.objects.filter(head | tail, kind__in=DEMAND_KINDS)
    if site_id is not None:
        edges = edges.filter(site_id=site_id)
    for pair_site, sku_id, moment, delta in (
        edges.order_by()
        .values_list("site_id", "sku_id", "occurred_at")
        .annotate(delta=Sum("on_hand_delta"))
    ):
        # Net demand is minus the on_hand change: a dispatch takes units out, a return adds.
        inside = start < moment <= now
        kept_in_buckets = (moment <= start and head_from_bucket) or moment > now
        if inside and not head_from_bucket and moment < instant(head_hour + HOUR):
            net[(pair_site, sku_id)] -= delta
        elif kept_in_buckets:
            net[(pair_site, sku_id)] += delta
    return dict(net)
