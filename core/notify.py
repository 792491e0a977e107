"""Telling the rooms above that something changed, without importing them.

A writer (ingest, corrections, on-call) calls `stock_changed_notify` or `alerts_changed_notify`
inside its transaction; once the transaction commits, the signal goes to every subscriber:
the live dashboards' broadcast (`dashboards.receivers`) and the alert evaluation request
(`oncall.apps`). So no writer imports a screen or on-call, and announcing a change does not
also enqueue jobs: each subscriber does its own part.

Subscribers run after the commit and must be cheap and never raise (a failure is logged and
the others still run): the writer's commit already stands, and what a subscriber misses is
caught up by its own periodic path (the dashboards resync, the scheduled alert evaluation).
"""

import logging
from collections.abc import Iterable
from functools import partial

from django.db import transaction
from django.dispatch import Signal

logger = logging.getLogger(__name__)

# site_codes: the sites whose stock (and so KPIs and alerts) changed.
stock_changed = Signal()
# site_codes: the sites whose alerts opened or resolved (None: an all-sites alert).
alerts_changed = Signal()


def stock_changed_notify(*, site_codes: Iterable[str]) -> None:
    """After the current transaction commits (at once outside one), send `stock_changed`."""
    transaction.on_commit(partial(notify_now, stock_changed, site_codes=sorted(set(site_codes))))


def alerts_changed_notify(*, site_codes: Iterable[str] | None) -> None:
    """After the current transaction commits (at once outside one), send `alerts_changed`."""
    codes = None if site_codes is None else sorted(set(site_codes))
    transaction.on_commit(partial(notify_now, alerts_changed, site_codes=codes))


def notify_now(signal: Signal, **kwargs) -> None:
    """Send to every subscriber; one that fails is logged and does not stop the others."""
    for receiver, response in signal.send_robust(sender=None, **kwargs):
        if isinstance(response, Exception):
            logger.error(
                "subscriber %s failed on %s",
                getattr(receiver, "__qualname__", receiver),
                kwargs,
                exc_info=response,
            )
