from django import template

from corrections.approval import APPROVE_CORRECTION
from corrections.selectors import approvals_waiting_count

register = template.Library()


@register.inclusion_tag("corrections/_waiting_link.html", takes_context=True)
def approvals_waiting_link(context, separator: str = "") -> dict:
    """The header link to what waits for approval, with its count: for approvers only."""
    user = context.get("user")
    if user is None or not user.has_perm(APPROVE_CORRECTION):
        return {"shown": False}
    return {"shown": True, "count": approvals_waiting_count(), "separator": separator}
