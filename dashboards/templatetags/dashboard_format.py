"""Formatting of KPI values for tiles: one place decides how a number reads, and "—" for none."""

from decimal import Decimal, InvalidOperation

from django import template
from django.conf import settings

register = template.Library()

NONE_SHOWN = "—"


def _number(value):
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float | Decimal):
        return value
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


def duration_format(seconds) -> str:
    seconds = _number(seconds)
    if seconds is None:
        return NONE_SHOWN
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def percent_format(value) -> str:
    value = _number(value)
    return NONE_SHOWN if value is None else f"{float(value) * 100:.1f}%"


@register.filter
def kpi_format(value, value_format: str) -> str:
    """Format a KPI value: integer, decimal, percent, money, amount, duration or skew."""
    if value_format == "skew" and isinstance(value, dict):
        # The KPI engine may give the skew as {"share": .., "units": ..}: show the share.
        value = value.get("share")
    if value_format in ("percent", "skew"):
        return percent_format(value)
    if value_format == "duration":
        return duration_format(value)
    number = _number(value)
    if number is None:
        return NONE_SHOWN
    if value_format == "integer":
        return f"{int(number):,}"
    if value_format == "money":
        return f"{float(number):,.2f} {settings.INVENTORY_CURRENCY}"
    if value_format == "amount":  # money without its currency (the template sets it smaller)
        return f"{float(number):,.2f}"
    return f"{float(number):,.2f}"


@register.filter
def seconds_ago(value) -> str:
    """A feed's freshness in seconds, as "12 s ago"; "never" when nothing was applied yet."""
    if _number(value) is None:
        return "never"
    return f"{duration_format(value)} ago"
