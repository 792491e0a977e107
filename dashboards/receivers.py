"""What the screens hear from the rooms below them (connected by `DashboardsConfig.ready`):
after a writer's commit (`core.notify`), `stock_changed` and `alerts_changed` are announced to
the live dashboards (`dashboards.broadcasts`).
"""

from django.dispatch import receiver

from core.notify import alerts_changed, stock_changed
from dashboards.broadcasts import alerts_changed_announce, scopes_changed_announce


@receiver(stock_changed, dispatch_uid="dashboards_stock_changed")
def stock_changed_broadcast(sender, *, site_codes, **kwargs) -> None:
    scopes_changed_announce(site_codes=site_codes)


@receiver(alerts_changed, dispatch_uid="dashboards_alerts_changed")
def alerts_changed_broadcast(sender, *, site_codes, **kwargs) -> None:
    alerts_changed_announce(site_codes=site_codes)
