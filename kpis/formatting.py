"""How a KPI value reads (tiles, alert measures): one place decides, and "—" for none."""

from decimal import Decimal, InvalidOperation

from django.conf import settings

NONE_SHOWN = "—"


def value_number(value):
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float | Decimal):
        return value
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


def duration_format(seconds) -> str:
    seconds = value_number(seconds)
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
    value = value_number(value)
    return NONE_SHOWN if value is None else f"{float(value) * 100:.1f}%"


def kpi_format(value, value_format: str) -> str:
    """Format a KPI value: integer, decimal, percent, money, amount, duration or skew."""
    if value_format == "skew" and isinstance(value, dict):
        # The KPI engine may give the skew as {"share": .., "units": ..}: show the share.
        value = value.get("share")
    if value_format in ("percent", "skew"):
        return percent_format(value)
    if value_format == "duration":
        return duration_format(value)
    number = value_number(value)
    if number is None:
        return NONE_SHOWN
    if value_format == "integer":
        return f"{int(number):,}"
    if value_format == "money":
        return f"{float(number):,.2f} {settings.INVENTORY_CURRENCY}"
    if value_format == "amount":  # money without its currency (the template sets it smaller)
        return f"{float(number):,.2f}"
    return f"{float(number):,.2f}"
