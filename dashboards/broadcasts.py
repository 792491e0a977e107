"""Announcements to the live dashboards.

CONTRACT (stub until the live-dashboard issue lands): writers call `scopes_changed_announce`
after their transaction commits (`transaction.on_commit`), naming the sites whose numbers
changed; the dashboards coalesce and recompute. Cheap: one Redis call at most.
"""

from collections.abc import Iterable


def scopes_changed_announce(*, site_codes: Iterable[str]) -> None:
    """Tell the dashboards that these sites (and so the all-sites scope) changed."""


def alerts_changed_announce(*, site_codes: Iterable[str]) -> None:
    """Tell the dashboards that alerts opened or resolved for these sites (None: all-sites)."""
