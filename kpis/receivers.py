"""What the KPI read model hears from the ledger (connected by `KpisConfig.ready`), in the
writer's transaction (derived data that must stay exact with the ledger):
- `ledger.signals.movements_recorded`: every ledger write folds into the KPI rollups, the
  restocking demand (`kpis.demand`) and the restocking rows (`kpis.restock_state`);
- the catalog's model saves: standard costs and reorder points are edited by `catalog_import`,
  by the admin's SKU form and its site reorder point inline, and every save is caught here. A
  queryset `.update()` of `unit_cost` bypasses them; a site's save carries its code and
  restocking lead time to its restocking rows; `rebuild_kpis` cannot recover a cost
  history that was never recorded (see docs/kpis.md).
"""

import operator
from decimal import Decimal

from django.db import transaction
from django.db.models.signals import post_delete, post_save, pre_save
from django.dispatch import receiver
from django.utils import timezone

from kpis.demand import demand_movements_record
from kpis.restock_state import (
    restock_movements_record,
    restock_reorder_points_refresh,
    restock_site_changed,
    restock_sku_changed,
)
from kpis.rollups import rollups_movements_record, unit_cost_change_record
from kpis.stock_status import stock_status_reorder_points_refresh
from kpis.trouble_hours import trouble_reorder_point_changed
from ledger.models import Site, SiteReorderPoint, Sku
from ledger.services import MOVEMENT_COLUMNS
from ledger.signals import movements_recorded

_DEMAND_COLUMNS = operator.itemgetter(
    *(
        MOVEMENT_COLUMNS.index(name)
        for name in ("site_id", "sku_id", "kind", "on_hand_delta", "occurred_at")
    )
)


@receiver(movements_recorded, dispatch_uid="kpis_movements_recorded")
def movements_fold(sender, *, movements, levels, levels_before, **kwargs) -> None:
    rollups_movements_record(movements=movements, levels=levels, levels_before=levels_before)


@receiver(movements_recorded, dispatch_uid="kpis_demand_recorded")
def demand_fold(sender, *, movements, levels, **kwargs) -> None:
    demand_movements_record(map(_DEMAND_COLUMNS, movements))
    restock_movements_record(map(_DEMAND_COLUMNS, movements), levels)


@receiver(pre_save, sender=Sku, dispatch_uid="kpis_sku_previous")
def sku_previous_remember(sender, instance: Sku, raw: bool = False, **kwargs) -> None:
    instance._kpi_previous = None
    if instance.pk and not raw:
        instance._kpi_previous = (
            Sku.objects.filter(pk=instance.pk).values_list("unit_cost", "reorder_point").first()
        )


@receiver(post_save, sender=Sku, dispatch_uid="kpis_sku_changed")
def sku_changed(sender, instance: Sku, created: bool, raw: bool = False, **kwargs) -> None:
    previous = getattr(instance, "_kpi_previous", None)
    if created or raw or previous is None:
        return
    old_cost, old_point = previous
    new_cost = Decimal(str(instance.unit_cost))
    with transaction.atomic():
        if old_cost != new_cost:
            unit_cost_change_record(
                sku_id=instance.pk, old_cost=old_cost, new_cost=new_cost, changed_at=timezone.now()
            )
        if old_point != instance.reorder_point:
            stock_status_reorder_points_refresh(sku_id=instance.pk)
            trouble_reorder_point_changed(sku_id=instance.pk)
            restock_reorder_points_refresh(sku_id=instance.pk)
        restock_sku_changed(instance)


@receiver(post_save, sender=SiteReorderPoint, dispatch_uid="kpis_site_reorder_point_saved")
@receiver(post_delete, sender=SiteReorderPoint, dispatch_uid="kpis_site_reorder_point_deleted")
def site_reorder_point_changed(sender, instance: SiteReorderPoint, **kwargs) -> None:
    if kwargs.get("raw"):
        return
    with transaction.atomic():
        stock_status_reorder_points_refresh(sku_id=instance.sku_id, site_id=instance.site_id)
        trouble_reorder_point_changed(sku_id=instance.sku_id, site_id=instance.site_id)
        restock_reorder_points_refresh(sku_id=instance.sku_id, site_id=instance.site_id)


@receiver(post_save, sender=Site, dispatch_uid="kpis_site_saved")
def site_changed(sender, instance: Site, created: bool, raw: bool = False, **kwargs) -> None:
    """A site's code or restocking lead time may have changed: its restocking rows follow."""
    if created or raw:
        return
    restock_site_changed(instance)
