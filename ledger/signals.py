"""The ledger's one hook: sent inside the writing transaction after every `movements_record`.

Derived data that must stay exact with the ledger (the KPI rollups) subscribes to it, so the
ledger imports nothing above it. A receiver runs in the writer's transaction, holding the row
locks of the levels: an error in it rolls the movements back with it (exact or nothing).

Arguments: `movements`, the rows written (`ledger.services.MOVEMENT_COLUMNS`); `levels` and
`levels_before`, (site_id, sku_id) -> (on_hand, reserved) of every level moved, after and before.
"""

from django.dispatch import Signal

movements_recorded = Signal()
