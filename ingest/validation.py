"""Validating events: schema, storable text and times, value limits, site and SKU codes."""

import re
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.db import connection
from django.db.models import BooleanField, Q
from django.db.models.expressions import RawSQL
from django.utils import timezone
from pydantic import ValidationError

from core.db import pg_int_array, pg_text_array
from core.timebounds import accepted_until
from ingest.items import Item
from ingest.models import (
    RejectionCode,
)
from ingest.schemas import (
    MAX_QTY,
    ORDER_EVENT_TYPES,
    event_validate,
    validation_reason,
)
from ledger.models import Site, Sku
from ledger.selectors import CODE_LOOKUP_CHUNK, ids_by_code

# In a body that passed `body_decode` (no literal NUL, valid UTF-8), the only way to a string
# PostgreSQL cannot store is a JSON escape: \u0000 or a lone surrogate \ud800-\udfff.
UNSTORABLE_ESCAPE = re.compile(r"\\u(0000|d[89a-f])", re.IGNORECASE)


def text_problem(value: object, path: str = "") -> str | None:
    """Name the first string PostgreSQL cannot store (NUL, lone surrogate) and where it is."""
    if isinstance(value, str):
        if "\x00" in value:
            return f"{path or 'text'}: contains a NUL character"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return f"{path or 'text'}: contains an invalid unicode escape (a lone surrogate)"
        return None
    if isinstance(value, dict):
        children = value.items()
    elif isinstance(value, list):
        children = enumerate(value)
    else:
        return None
    for key, child in children:
        problem = text_problem(key, path) or text_problem(child, f"{path}.{key}".lstrip("."))
        if problem:
            return problem
    return None


def _event_time_range() -> tuple[datetime, datetime]:
    """The event times accepted now: from the floor to the future tolerance after now."""
    return settings.EVENT_TIME_FLOOR, accepted_until(
        now=timezone.now(), tolerance_seconds=settings.EVENT_TIME_FUTURE_TOLERANCE_SECONDS
    )


def _time_problem(event, earliest: datetime, latest: datetime) -> str | None:
    """Name the event's time field outside [earliest, latest], and the range.

    Compared as given, never converted: 9999-12-31T23:59:59-14:00 is valid ISO 8601 that no
    datetime can hold in UTC (and that PostgreSQL stores, as year 10000, but cannot give back).
    """
    occurred_at = event.occurred_at
    if earliest <= occurred_at <= latest:
        return None
    tolerance_h = settings.EVENT_TIME_FUTURE_TOLERANCE_SECONDS / 3600
    return (
        f"occurred_at: {occurred_at.isoformat()} is outside the accepted range "
        f"{earliest.isoformat()} to {latest.isoformat(timespec='seconds')} "
        f"(not before {earliest:%Y-%m-%d}, at most {tolerance_h:g} h after now)"
    )


def events_validate(items: list[Item]) -> None:
    earliest, latest = _event_time_range()
    for item in items:
        if item.outcome:
            continue
        if not isinstance(item.raw, dict):
            item.reject(RejectionCode.MALFORMED, "an event must be a JSON object")
            continue
        if item.from_csv and item.raw.get("type") in ORDER_EVENT_TYPES:
            item.reject(
                RejectionCode.MALFORMED,
                "type: CSV carries only stock.* events; send order events as JSON or NDJSON",
            )
            continue
        try:
            event = event_validate(item.raw)
        except ValidationError as error:
            item.reject(RejectionCode.MALFORMED, validation_reason(error))
            continue
        # Only the validated fields are stored (extra ones are ignored), so only they matter.
        problem = text_problem(event.model_dump()) if item.text_check else None
        if problem:
            item.reject(RejectionCode.MALFORMED, problem)
            continue
        problem = _time_problem(event, earliest, latest)
        if problem:
            item.reject(RejectionCode.TIME_OUT_OF_RANGE, problem)
            continue
        item.event = event


def one_of(model, column: str, values: Sequence, *, text: bool):
    """A filter `column IN values`: on PostgreSQL one array parameter (Django would prepare
    and quote each of thousands of values on the client), elsewhere `__in`."""
    if connection.vendor != "postgresql":
        return Q(**{f"{column}__in": list(values)})
    literal = pg_text_array(values) if text else pg_int_array(values)
    kind = "text" if text else "bigint"
    # Only our own table and column names are interpolated; the values are one parameter.
    sql = f'"{model._meta.db_table}"."{column}" = ANY(%s::{kind}[])'
    return RawSQL(sql, [literal], output_field=BooleanField())  # noqa: S611 (see above)


# The most one event (or one line of it) may move in value, units times unit cost: the KPI
# rollups add value changes in 1/10,000 of the currency to 64-bit sums, which a billion units of
# a SKU costing billions overflowed (the batch's transaction then failed at every claim).
EVENT_VALUE_LIMIT = Decimal(10) ** 12
_COSTLY_FROM = EVENT_VALUE_LIMIT / MAX_QTY  # SKUs cheaper than this never reach the limit


def _skus_lookup(codes: set[str]) -> tuple[dict[str, int], dict[str, Decimal]]:
    """SKU ids by code, and the unit costs of those costly enough to reach the value limit."""
    ids: dict[str, int] = {}
    costly: dict[str, Decimal] = {}
    code_list = sorted(codes)
    for start in range(0, len(code_list), CODE_LOOKUP_CHUNK):
        chunk = code_list[start : start + CODE_LOOKUP_CHUNK]
        for code, pk, unit_cost in Sku.objects.filter(code__in=chunk).values_list(
            "code", "id", "unit_cost"
        ):
            ids[code] = pk
            if unit_cost > _COSTLY_FROM:
                costly[code] = unit_cost
    return ids, costly


def _value_problem(fields: dict, costly: dict[str, Decimal]) -> str | None:
    """Name the quantity of an event whose value, at unit cost, exceeds EVENT_VALUE_LIMIT."""
    sku = fields.get("sku")
    amounts = [
        (name, sku, fields[name])
        for name in ("qty", "qty_delta", "counted_qty")
        if sku in costly and name in fields
    ]
    amounts += [
        (f"lines.{position}.qty", line.sku, line.qty)
        for position, line in enumerate(fields.get("lines", ()))
        if line.sku in costly
    ]
    for name, code, units in amounts:
        if abs(units) * costly[code] > EVENT_VALUE_LIMIT:
            return (
                f"{name}: {abs(units)} units of {code!r} at {costly[code]} are worth more than "
                f"{EVENT_VALUE_LIMIT:,.0f}, the most one event may move"
            )
    return None


def catalog_resolve(items: list[Item]) -> tuple[dict[str, int], dict[str, int]]:
    """Reject events naming an unknown site or SKU (or a foreign currency); return the ids."""
    site_codes, sku_codes = set(), set()
    for item in items:
        if item.outcome:
            continue
        # The model's __dict__: getattr on a pydantic model for a field it lacks is slow.
        fields = item.event.__dict__
        site_codes.add(fields["site"])
        if fields.get("to_site"):
            site_codes.add(fields["to_site"])
        if fields.get("sku"):
            sku_codes.add(fields["sku"])
        for line in fields.get("lines", ()):
            sku_codes.add(line.sku)
    site_ids = ids_by_code(Site, site_codes)
    sku_ids, costly = _skus_lookup(sku_codes)
    currency = settings.INVENTORY_CURRENCY
    for item in items:
        if item.outcome:
            continue
        fields = item.event.__dict__
        site, to_site, sku = fields["site"], fields.get("to_site"), fields.get("sku")
        if site not in site_ids:
            item.reject(RejectionCode.UNKNOWN_SITE, f"site: unknown site {site!r}")
        elif to_site is not None and to_site not in site_ids:
            item.reject(RejectionCode.UNKNOWN_SITE, f"to_site: unknown site {to_site!r}")
        elif to_site == site:
            item.reject(RejectionCode.MALFORMED, "to_site: must differ from site")
        elif sku is not None and sku not in sku_ids:
            item.reject(RejectionCode.UNKNOWN_SKU, f"sku: unknown SKU {sku!r}")
        elif fields.get("currency") not in (None, currency):
            item.reject(
                RejectionCode.WRONG_CURRENCY,
                f"currency: must be {currency} (the deployment currency), "
                f"not {fields['currency']!r}",
            )
        else:
            for position, line in enumerate(fields.get("lines", ())):
                if line.sku not in sku_ids:
                    item.reject(
                        RejectionCode.UNKNOWN_SKU,
                        f"lines.{position}.sku: unknown SKU {line.sku!r}",
                    )
                    break
            if costly and not item.outcome:
                problem = _value_problem(fields, costly)
                if problem:
                    item.reject(RejectionCode.MALFORMED, problem)
    return site_ids, sku_ids
