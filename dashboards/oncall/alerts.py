"""Alert rules and their evaluation.

CONTRACT (stub until the alerts issue lands): `alerts_evaluation_request` is called by
`dashboards.broadcasts.scopes_changed_announce` (after a commit) and must stay cheap: it
schedules an evaluation (throttled), it does not evaluate inline.
"""

from collections.abc import Iterable


def alerts_evaluation_request(*, site_codes: Iterable[str]) -> None:
    """Ask for the alert rules of these sites (and all-sites rules) to be evaluated soon."""
