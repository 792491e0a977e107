from django import template

from oncall.selectors import open_alerts

register = template.Library()


@register.simple_tag
def open_alerts_for(site_code: str | None) -> list[dict]:
    """The open alerts a dashboard of this scope shows (None: all sites)."""
    return open_alerts(site_code=site_code)
