"""Posting a decision (approve, reject, reverse) from an object's admin page, one way for all."""

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed
from django.shortcuts import redirect
from django.urls import reverse

from corrections.exceptions import CorrectionError, CorrectionNotAllowed
from corrections.forms import DecisionForm


def require_any(request, *permissions: str) -> None:
    if not any(request.user.has_perm(permission) for permission in permissions):
        raise PermissionDenied


def decision_post(
    model_admin, request, pk: int, *, decide, permission: str, page: str, done: str, logged=None
):
    """Run `decide(pk, user, note)`, say how it went, log it, and go back to the object's page.

    `page` is the admin URL name of the object's page; `done` (the message) and `logged` (the
    history entry, None when `decide` logs itself) are formatted with the result as `obj`.
    """
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    require_any(request, permission)
    form = DecisionForm(request.POST)
    form.is_valid()
    note = form.cleaned_data.get("note", "")
    try:
        obj = decide(pk, request.user, note)
    except CorrectionNotAllowed as error:
        raise PermissionDenied(str(error)) from None
    except CorrectionError as error:
        messages.error(request, str(error))
        return redirect(reverse(page, args=[pk]))
    if logged:
        message = logged.format(obj=obj) + (f" Note: {note}" if note else "")
        model_admin.log_change(request, obj, message)
    messages.success(request, done.format(obj=obj))
    return redirect(reverse(page, args=[obj.pk]))
