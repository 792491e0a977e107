"""Money as people read it: always two decimals, thousands grouped, the deployment currency."""

from decimal import Decimal, InvalidOperation

from django.conf import settings

NONE_SHOWN = "—"


def money_shown(amount) -> str:
    """1.5 -> "1.50 USD", Decimal("2050.0000") -> "2,050.00 USD", None -> "—"."""
    if amount is None or amount == "":
        return NONE_SHOWN
    try:
        amount = Decimal(str(amount))
    except (InvalidOperation, ValueError):
        return str(amount)
    return f"{amount:,.2f} {settings.INVENTORY_CURRENCY}"
