"""The approval rules of every change a person makes to stock by hand, and what corrections and
count sheets share: who may do what, when a change waits for a manager, deciding what waits.

Approval covers every way a person changes stock by hand, so that it cannot be dodged:
- a correction waits when its value, added to the values of the corrections its requester
  applied to the same stock level without approval in the last 24 hours, is above the
  threshold (three corrections of 984 wait from the second one, as one of 2,952 would);
- a count sheet waits when the total value of its differences is above the threshold.
"""

from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import Q, Sum

from core.notify import stock_changed_notify
from corrections.exceptions import CorrectionNotAllowed, InvalidCorrection
from corrections.models import Correction, CorrectionStatus

CORRECT_STOCK = "inventory_ops.correct_stock"
APPROVE_CORRECTION = "inventory_ops.approve_correction"
IMPORT_COUNTS = "inventory_ops.import_counts"
# Corrections of one requester on one stock level add up over this rolling period.
APPROVAL_WINDOW = timedelta(hours=24)


def approval_threshold() -> Decimal:
    return Decimal(str(settings.CORRECTION_APPROVAL_THRESHOLD))


def needs_approval(value: Decimal) -> bool:
    return value > approval_threshold()


def unapproved_recent_values(
    *, requested_by, pairs: set[tuple[int, int]], now: datetime
) -> dict[tuple[int, int], Decimal]:
    """Per (site id, SKU id): what `requested_by` applied there without approval lately.

    Only corrections that changed stock with no manager's decision count (a pending one has
    not changed stock; an approved one was seen by a manager). Read it with the levels locked
    so that two requests of the same person on the same level are counted one after the other.
    """
    if not pairs:
        return {}
    condition = Q()
    for site_id, sku_id in pairs:
        condition |= Q(site_id=site_id, sku_id=sku_id)
    rows = (
        Correction.objects.filter(
            condition,
            requested_by=requested_by,
            requested_at__gt=now - APPROVAL_WINDOW,
            status=CorrectionStatus.APPLIED,
            decided_by__isnull=True,
        )
        .values_list("site_id", "sku_id")
        .annotate(total=Sum("value"))
    )
    return {(site_id, sku_id): total for site_id, sku_id, total in rows}


def permission_require(user, permission: str, doing: str) -> None:
    if not user.has_perm(permission):
        raise CorrectionNotAllowed(f"you do not have permission to {doing}")


def recordable_value_limit(model) -> Decimal:
    field = model._meta.get_field("value")
    return Decimal(10) ** (field.max_digits - field.decimal_places)


def pending_lock(queryset, pk: int, *, name: str, not_pending: type[Exception]):
    """Lock a correction or count sheet waiting for approval, or say why it cannot be decided."""
    waiting = queryset.select_for_update().filter(pk=pk).first()
    if waiting is None:
        raise InvalidCorrection(f"no {name} #{pk}")
    if waiting.status != CorrectionStatus.PENDING:  # the same value for count sheets
        raise not_pending(pk, waiting.get_status_display().lower())
    return waiting


def stock_change_announce(site_codes: set[str]) -> None:
    if site_codes:
        stock_changed_notify(site_codes=site_codes)
