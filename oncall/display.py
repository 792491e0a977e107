"""Numbers of alerts as people read them: units, sensible rounding, no exponent notation.

`Decimal("900.0000").normalize()` prints "9E+2"; a float prints 901.1638 where "15 min 1 s" is
meant. Every value and threshold shown on a page, in a notification or in a transition note goes
through `measure_display`, so one rule reads the same everywhere.
"""

from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings

from oncall.models import AlertKind

SECONDS_KINDS = {AlertKind.FEED_SILENT, AlertKind.INGEST_LAG}
RATIO_KINDS = {AlertKind.STOCK_MISMATCH_RATE, AlertKind.ORDER_ACCURACY}
MONEY_KINDS = {AlertKind.MISMATCH_VALUE}


def _rounded(value: Decimal, places: int) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def number_display(value: Decimal, *, places: int = 0) -> str:
    """`1234.5` -> "1,235" (places=0), "1,234.50" (places=2): thousands separated, fixed point."""
    return f"{_rounded(value, places):,.{places}f}"


def duration_display(seconds: Decimal) -> str:
    """A duration as a person says it: "45 s", "15 min 1 s", "2 h 5 min", "3 d 4 h"."""
    total = int(_rounded(seconds, 0))
    negative, total = total < 0, abs(total)
    if total < 120:
        text = f"{total} s"
    elif total < 2 * 3600:
        minutes, rest = divmod(total, 60)
        text = f"{minutes} min" + (f" {rest} s" if rest else "")
    elif total < 2 * 86400:
        hours, rest = divmod(total, 3600)
        minutes = rest // 60
        text = f"{hours} h" + (f" {minutes} min" if minutes else "")
    else:
        days, rest = divmod(total, 86400)
        hours = rest // 3600
        text = f"{days} d" + (f" {hours} h" if hours else "")
    return f"-{text}" if negative else text


def percent_display(ratio: Decimal) -> str:
    """A 0-1 ratio as a percentage with at most one decimal: 0.05 -> "5 %", 0.98765 -> "98.8 %"."""
    percent = _rounded(ratio * 100, 1)
    text = f"{percent:,.1f}"
    return (text[:-2] if text.endswith(".0") else text) + " %"


def measure_display(kind: str, value: Decimal | float | int | None) -> str:
    """Format a rule's value or threshold for people, in the unit of its kind."""
    if value is None:
        return "no data"
    value = Decimal(str(value))
    if kind in SECONDS_KINDS:
        return duration_display(value)
    if kind in RATIO_KINDS:
        return percent_display(value)
    if kind in MONEY_KINDS:
        return f"{number_display(value, places=2)} {settings.INVENTORY_CURRENCY}"
    places = 0 if value == value.to_integral_value() else 2
    return number_display(value, places=places)
