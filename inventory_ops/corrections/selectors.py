"""Reads for the corrections screens: previews of what a correction or sheet would do."""

from dataclasses import dataclass
from decimal import Decimal

from inventory_ops.corrections.models import CountSheet
from inventory_ops.corrections.services import correction_value_check, needs_approval
from inventory_ops.models import Site, Sku, StockLevel


@dataclass(frozen=True)
class CorrectionPreview:
    site: Site
    sku: Sku
    on_hand_before: int
    delta: int
    value: Decimal
    needs_approval: bool

    @property
    def on_hand_after(self) -> int:
        return self.on_hand_before + self.delta


def correction_preview(
    *, site: Site, sku: Sku, counted_qty: int | None = None, delta: int | None = None
) -> CorrectionPreview:
    """What the correction would do now (the applied delta is taken again under the lock).

    Raises InvalidCorrection if it would be worth more than a correction can record, as
    applying it would.
    """
    on_hand = (
        StockLevel.objects.filter(site=site, sku=sku).values_list("on_hand", flat=True).first() or 0
    )
    change = delta if delta is not None else counted_qty - on_hand
    value = abs(change) * sku.unit_cost
    correction_value_check(value)
    return CorrectionPreview(site, sku, on_hand, change, value, needs_approval(value))


@dataclass(frozen=True)
class CountLinePreview:
    line_number: int
    site: Site
    sku: Sku
    counted_qty: int
    on_hand: int
    on_hand_before: int | None
    applied_delta: int | None

    @property
    def difference(self) -> int:
        if self.applied_delta is not None:
            return self.applied_delta
        return self.counted_qty - self.on_hand

    @property
    def is_mismatch(self) -> bool:
        return self.difference != 0

    @property
    def value(self) -> Decimal:
        return abs(self.difference) * self.sku.unit_cost


def count_sheet_preview(*, sheet: CountSheet) -> list[CountLinePreview]:
    """Each line with today's on_hand (or, once applied, what it found under the lock)."""
    lines = list(sheet.lines.select_related("site", "sku"))
    on_hand = {
        (site_id, sku_id): value
        for site_id, sku_id, value in StockLevel.objects.filter(
            site_id__in={line.site_id for line in lines},
            sku_id__in={line.sku_id for line in lines},
        ).values_list("site_id", "sku_id", "on_hand")
    }
    return [
        CountLinePreview(
            line_number=line.line_number,
            site=line.site,
            sku=line.sku,
            counted_qty=line.counted_qty,
            on_hand=on_hand.get((line.site_id, line.sku_id), 0),
            on_hand_before=line.on_hand_before,
            applied_delta=line.applied_delta,
        )
        for line in lines
    ]
