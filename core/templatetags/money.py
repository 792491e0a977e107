from django import template

from core.money import money_shown

register = template.Library()


@register.filter
def money(amount) -> str:
    """`{{ value|money }}`: "2,050.00 USD" (core.money)."""
    return money_shown(amount)
