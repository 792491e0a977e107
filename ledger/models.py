"""The stock domain: sites, SKUs, stock levels and the append-only movement ledger.

Only `ledger.services` writes StockLevel and Movement rows. The database refuses updates
to movements (and deletes, on PostgreSQL): see migration 0002.
"""

from decimal import Decimal

from django.conf import settings
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q

from core.timechecks import storable_time_check

code_validator = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
    "Use letters, digits, '.', '_' or '-', starting with a letter or digit.",
)


class Site(models.Model):
    """A warehouse, store or micro-fulfillment hub."""

    code = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    timezone = models.CharField(max_length=64, default="UTC")
    # Restocking: empty means the deployment's setting (RESTOCK_LEAD_DAYS, RESTOCK_TARGET_DAYS).
    restock_lead_days = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        help_text="Days a delivery from the supplier takes; empty: the deployment's default.",
    )
    restock_target_days = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        help_text="Days of demand a restock should cover; empty: the deployment's default.",
    )

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.code} ({self.name})"


class Sku(models.Model):
    code = models.CharField(max_length=64, unique=True, validators=[code_validator])
    name = models.CharField(max_length=300)
    unit_cost = models.DecimalField(
        max_digits=14, decimal_places=4, validators=[MinValueValidator(Decimal("0"))]
    )
    reorder_point = models.IntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
        help_text="Default for every site; a site may override it.",
    )

    class Meta:
        ordering = ["code"]
        verbose_name = "SKU"
        verbose_name_plural = "SKUs"
        constraints = [
            models.CheckConstraint(
                condition=Q(unit_cost__gte=0), name="sku_unit_cost_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.code} ({self.name})"


class SiteReorderPoint(models.Model):
    """A site's own reorder point for a SKU, overriding `Sku.reorder_point`."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="reorder_points")
    sku = models.ForeignKey(Sku, on_delete=models.CASCADE, related_name="site_reorder_points")
    reorder_point = models.IntegerField(validators=[MinValueValidator(0)])

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["site", "sku"], name="unique_site_reorder_point"),
        ]

    def __str__(self) -> str:
        return f"{self.site.code}/{self.sku.code}: {self.reorder_point}"


class StockLevelQuerySet(models.QuerySet):
    def for_site(self, site: Site) -> "StockLevelQuerySet":
        return self.filter(site=site)

    def with_available_units(self) -> "StockLevelQuerySet":
        """Annotate `available_units` (on_hand - reserved) to filter or order by in SQL.

        Not named `available`: Django sets an annotation on each loaded row, and the model's
        read-only `available` property would refuse it (AttributeError). Both give one number.
        """
        return self.annotate(available_units=models.F("on_hand") - models.F("reserved"))


class StockLevel(models.Model):
    """What a site holds of a SKU now. Always equals the sum of its movements."""

    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="stock_levels")
    sku = models.ForeignKey(Sku, on_delete=models.PROTECT, related_name="stock_levels")
    on_hand = models.BigIntegerField(default=0)
    reserved = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    objects = StockLevelQuerySet.as_manager()

    class Meta:
        ordering = ["site__code", "sku__code"]
        constraints = [
            models.UniqueConstraint(fields=["site", "sku"], name="unique_stock_level_site_sku"),
        ]
        permissions = [
            ("view_dashboard", "Can view the live dashboards"),
            ("correct_stock", "Can request stock corrections"),
            ("approve_correction", "Can approve stock corrections above the threshold"),
            ("import_counts", "Can import count sheets"),
            ("run_remediation", "Can run on-call remediations (requeue, replay, rebuild)"),
        ]

    def __str__(self) -> str:
        return f"{self.site.code}/{self.sku.code}: {self.on_hand} on hand, {self.reserved} reserved"

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved


class MovementKind(models.TextChoices):
    ORDER_RESERVED = "order_reserved", "Order reserved"
    ORDER_DISPATCHED = "order_dispatched", "Order dispatched"
    ORDER_RELEASED = "order_released", "Order reservation released"
    ORDER_RETURNED = "order_returned", "Order returned"
    RECEIVED = "received", "Received"
    TRANSFER_OUT = "transfer_out", "Transferred out"
    TRANSFER_IN = "transfer_in", "Transferred in"
    ADJUSTED = "adjusted", "Adjusted"
    COUNTED = "counted", "Counted"
    CORRECTION = "correction", "Correction"


class MovementCause(models.TextChoices):
    FEED_EVENT = "feed_event", "Feed event"
    CORRECTION = "correction", "Correction"
    COUNT = "count", "Count sheet"


class MovementQuerySet(models.QuerySet):
    def for_level(self, *, site_id: int, sku_id: int) -> "MovementQuerySet":
        return self.filter(site_id=site_id, sku_id=sku_id)


class Movement(models.Model):
    """One change to a stock level. Insert-only: the database refuses updates."""

    # No database foreign keys on this append-only table: PostgreSQL checks each one per
    # inserted row at commit (a lookup and a row lock of the site and the SKU), which cost
    # more than the insert itself in a feed batch. The only writer, `movements_record`, resolves
    # site and SKU in its transaction, and every movement's stock level (which keeps its
    # foreign keys) exists; sites, SKUs and users are never deleted (PROTECT, in Django).
    # `check_ledger` names movements whose site or SKU is missing. No single-column index on
    # site or SKU: movement_level_idx serves both a level's lineage and a SKU's movements (a
    # cost change), and every index costs each of the tens of thousands of rows a feed group
    # writes.
    site = models.ForeignKey(
        Site, on_delete=models.PROTECT, related_name="+", db_constraint=False, db_index=False
    )
    sku = models.ForeignKey(
        Sku, on_delete=models.PROTECT, related_name="+", db_constraint=False, db_index=False
    )
    kind = models.CharField(max_length=32, choices=MovementKind.choices)
    on_hand_delta = models.BigIntegerField(default=0)
    reserved_delta = models.BigIntegerField(default=0)
    # The level right after this movement, taken under the row lock: lineage pages show it
    # without summing the ledger.
    on_hand_after = models.BigIntegerField()
    reserved_after = models.BigIntegerField()
    occurred_at = models.DateTimeField(help_text="When it happened (event time).")
    recorded_at = models.DateTimeField(auto_now_add=True)  # not indexed: nothing looks it up
    cause = models.CharField(max_length=16, choices=MovementCause.choices)
    cause_ref = models.CharField(
        max_length=300,
        blank=True,
        help_text="What caused it: '<source>:<event_id>', a correction id or a count sheet id.",
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_constraint=False,
        db_index=False,  # movement_user_idx: only the rows that have a user (feeds have none)
    )

    objects = MovementQuerySet.as_manager()

    class Meta:
        constraints = [
            storable_time_check("occurred_at", name="movement_occurred_at_storable"),
        ]
        ordering = ["id"]
        indexes = [
            # SKU first: it also finds all movements of a SKU (cost changes revalue them).
            models.Index(fields=["sku", "site", "id"], name="movement_level_idx"),
            models.Index(fields=["occurred_at"], name="movement_occurred_idx"),
            models.Index(
                fields=["user"], name="movement_user_idx", condition=models.Q(user__isnull=False)
            ),
        ]

    def __str__(self) -> str:
        return (
            f"{self.kind} {self.site_id}/{self.sku_id} "
            f"{self.on_hand_delta:+}/{self.reserved_delta:+}"
        )
