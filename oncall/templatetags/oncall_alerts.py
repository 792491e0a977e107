from django import template

from oncall.measures import measure_shown
from oncall.selectors import open_alerts

register = template.Library()


@register.simple_tag
def open_alerts_for(site_code: str | None) -> list[dict]:
    """The open alerts a dashboard of this scope shows (None: all sites)."""
    return open_alerts(site_code=site_code)


@register.filter
def alert_measure(value, kind: str) -> str:
    """An alert's value or threshold for people: 901, 5.0%, 15.0 min, 2,050.00 USD."""
    return measure_shown(value, kind)
