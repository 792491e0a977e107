"""The restocking read model: one row per (site, SKU) stock level, kept by the ledger's writers
(`kpis.restock_state`), so that `/api/restock` reads only the pairs that need restocking, in
order, from an index. Imported by `kpis.models` (the app's models)."""

from django.db import models
from django.db.models import Q

from core.timechecks import storable_time_check


class RestockWindow(models.Model):
    """The one row saying from when `RestockState.demand` counts, and with which default lead
    time its `needs` was judged.

    `start` is a whole hour at or before the start of the 28-day demand window of every read
    it serves; `kpis.restock_state.restock_window_advance` moves it forward (subtracting the
    demand of the hours it leaves behind), `rebuild_kpis` sets it.
    """

    id = models.SmallIntegerField(primary_key=True, default=1)
    start = models.DateTimeField()
    lead_default = models.IntegerField()

    class Meta:
        constraints = [storable_time_check("start", name="restock_window_start_storable")]

    def __str__(self) -> str:
        return f"restock demand from {self.start:%Y-%m-%d %H:%M}"


class RestockState(models.Model):
    """One (site, SKU) as restocking sees it, as of the latest ledger write.

    `demand`: units dispatched minus returned with `occurred_at` at or after
    `RestockWindow.start` (events dated in the future included); a read takes out the few
    movements between that start and its own window's start, and those after its `now`
    (`kpis.restock`). `cover` (available * 28 / demand, NULL without positive demand),
    `below_point` and `needs` (restocking needed, with the pair's site lead time `lead_days`)
    are judged from that `demand`; the codes are copied so that the urgency order (cover, then
    site, then SKU) is an index.
    """

    site_id = models.BigIntegerField()
    sku_id = models.BigIntegerField()
    site_code = models.CharField(max_length=64)
    sku_code = models.CharField(max_length=64)
    available = models.BigIntegerField()
    reorder_point = models.BigIntegerField(null=True)
    lead_days = models.IntegerField()
    demand = models.BigIntegerField(default=0)
    cover = models.FloatField(null=True)
    below_point = models.BooleanField()
    needs = models.BooleanField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["site_id", "sku_id"], name="restock_state_pair"),
        ]
        indexes = [
            # The pairs that need restocking, most urgent first: all sites, and one site's.
            models.Index(
                fields=["cover", "site_code", "sku_code"],
                name="restock_needs_idx",
                condition=Q(needs=True),
            ),
            models.Index(
                fields=["site_id", "cover", "sku_code"],
                name="restock_site_needs_idx",
                condition=Q(needs=True),
            ),
            # The pairs running out soonest (alerts), needing restocking or not.
            models.Index(fields=["cover"], name="restock_cover_idx", condition=Q(demand__gt=0)),
        ]

    def __str__(self) -> str:
        return f"{self.site_code}/{self.sku_code}: {self.available} available"
