"""Count sheets in the admin: upload and preview, apply (or submit for approval), decide."""

import csv
import io
import secrets
import zlib

import redis
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.models import DELETION, LogEntry
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.views.decorators.http import require_POST
from redis.exceptions import RedisError

from core.money import money_shown
from corrections.admin.decisions import decision_post, require_any
from corrections.approval import APPROVE_CORRECTION, IMPORT_COUNTS, approval_threshold
from corrections.countsheet_services import (
    count_sheet_apply,
    count_sheet_approve,
    count_sheet_create,
    count_sheet_discard,
    count_sheet_reject,
)
from corrections.countsheets import TEMPLATE_CSV
from corrections.exceptions import CorrectionError
from corrections.forms import CountSheetUploadForm, DecisionForm
from corrections.models import CountSheet, CountSheetStatus
from corrections.selectors import count_sheet_preview
from ledger.admin import ReadOnlyAdmin

CHANGE_PAGE = "admin:corrections_countsheet_change"
PROBLEMS_SHOWN = 200
# A refused sheet's full list of problems waits this long for its download (Redis, so that any
# web process can serve it).
PROBLEMS_KEPT_S = 3600


def _problems_key(user, token: str) -> str:
    return f"countsheet-problems:{user.pk}:{token}"


def problems_store(user, problems: list[tuple[int | None, str]]) -> str:
    """Keep the problems as CSV for their uploader; return the download's URL ("" if Redis is
    away: the page still shows the first ones)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["line", "problem"])
    writer.writerows((line or "file", problem) for line, problem in problems)
    token = secrets.token_urlsafe(16)
    try:
        _redis().set(
            _problems_key(user, token),
            zlib.compress(buffer.getvalue().encode()),
            ex=PROBLEMS_KEPT_S,
        )
    except RedisError:
        return ""
    return reverse("admin:corrections_countsheet_problems", args=[token])


def problems_fetch(user, token: str) -> str | None:
    try:
        stored = _redis().get(_problems_key(user, token))
    except RedisError:
        return None
    return None if stored is None else zlib.decompress(stored).decode()


def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=3)


@admin.register(CountSheet)
class CountSheetAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "filename",
        "status",
        "line_count",
        "value_shown",
        "uploaded_by",
        "uploaded_at",
        "decided_by",
    ]
    list_filter = ["status"]
    list_select_related = ["uploaded_by", "applied_by", "decided_by"]
    money_fields = ("value",)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(line_count=Count("lines"))

    @admin.display(description="value", ordering="value")
    def value_shown(self, sheet):
        return money_shown(sheet.value)

    @admin.display(description="lines", ordering="line_count")
    def line_count(self, sheet):
        return sheet.line_count

    def has_view_permission(self, request, obj=None):
        return any(
            request.user.has_perm(permission)
            for permission in (IMPORT_COUNTS, APPROVE_CORRECTION, "corrections.view_countsheet")
        )

    def has_add_permission(self, request):
        return request.user.has_perm(IMPORT_COUNTS)

    def get_urls(self):
        view = self.admin_site.admin_view
        return (
            [
                path(
                    "template.csv",
                    view(self.template_view),
                    name="corrections_countsheet_template",
                ),
                path(
                    "problems/<slug:token>.csv",
                    view(self.problems_view),
                    name="corrections_countsheet_problems",
                ),
            ]
            + [
                path(
                    f"<int:pk>/{name}/",
                    view(require_POST(getattr(self, f"{name}_view"))),
                    name=f"corrections_countsheet_{name}",
                )
                for name in ("apply", "discard", "approve", "reject")
            ]
            + super().get_urls()
        )

    def add_view(self, request, form_url="", extra_context=None):
        """Upload a sheet: every bad line is listed and nothing is kept; a good one is previewed."""
        require_any(request, IMPORT_COUNTS)
        form = CountSheetUploadForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            sheet = count_sheet_create(
                filename=form.cleaned_data["sheet"].name,
                rows=form.cleaned_data["rows"],
                uploaded_by=request.user,
            )
            self.log_addition(
                request, sheet, f"Uploaded with {len(form.cleaned_data['rows'])} line(s)."
            )
            return redirect(reverse("admin:corrections_countsheet_change", args=[sheet.pk]))
        problems = getattr(form, "problems", [])
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Import a count sheet",
            "form": form,
            # A 60,000-line sheet can have 50,000 problems: the page shows the first ones, the
            # rest is a download.
            "problems": problems[:PROBLEMS_SHOWN],
            "problem_count": len(problems),
            "problems_hidden": max(0, len(problems) - PROBLEMS_SHOWN),
            "problems_url": problems_store(request.user, problems) if problems else "",
        }
        return TemplateResponse(request, "admin/corrections/countsheet_upload.html", context)

    def template_view(self, request):
        """An empty sheet with the header a sheet needs."""
        require_any(request, IMPORT_COUNTS)
        response = HttpResponse(TEMPLATE_CSV, content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="count-sheet-template.csv"'
        return response

    def problems_view(self, request, token: str):
        """Every problem of the sheet this user last refused, as CSV (line, problem)."""
        require_any(request, IMPORT_COUNTS)
        content = problems_fetch(request.user, token)
        if content is None:
            raise Http404("This list of problems has expired: upload the sheet again.")
        response = HttpResponse(content, content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="count-sheet-problems.csv"'
        return response

    def change_view(self, request, object_id, form_url="", extra_context=None):
        sheet = get_object_or_404(
            CountSheet.objects.select_related("uploaded_by", "submitted_by", "decided_by"),
            pk=object_id,
        )
        if not self.has_view_permission(request, sheet):
            raise PermissionDenied
        lines = count_sheet_preview(sheet=sheet)
        mismatches = [line for line in lines if line.is_mismatch]
        user = request.user
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": str(sheet),
            "sheet": sheet,
            "lines": lines,
            "mismatch_count": len(mismatches),
            "mismatch_value": sum((line.value for line in mismatches), 0),
            "threshold": approval_threshold(),
            "can_apply": sheet.status == CountSheetStatus.PREVIEWED
            and user.has_perm(IMPORT_COUNTS),
            "can_decide": sheet.status == CountSheetStatus.PENDING
            and user.has_perm(APPROVE_CORRECTION)
            and user.pk not in (sheet.submitted_by_id, sheet.uploaded_by_id),
            "decision_form": DecisionForm(),
            "decision_explanation": f"Its differences were worth {sheet.value or 0:.2f} when "
            f"submitted, above the threshold ({approval_threshold()}). Approving applies every "
            "line now, each compared with stock as it is at that moment.",
        }
        return TemplateResponse(request, "admin/corrections/countsheet_preview.html", context)

    def _change_page(self, pk):
        return redirect(reverse(CHANGE_PAGE, args=[pk]))

    def apply_view(self, request, pk):
        require_any(request, IMPORT_COUNTS)
        try:
            sheet = count_sheet_apply(sheet_id=pk, applied_by=request.user)
        except CorrectionError as error:
            messages.error(request, str(error))
            return self._change_page(pk)
        if sheet.status == CountSheetStatus.APPLIED:
            self.log_change(request, sheet, f"Applied (differences worth {sheet.value:.2f}).")
            messages.success(request, f"Count sheet #{pk} applied.")
        else:
            self.log_change(
                request, sheet, f"Submitted for approval (differences worth {sheet.value:.2f})."
            )
            messages.warning(
                request,
                f"Count sheet #{pk}: its differences are worth {sheet.value:.2f}, above the "
                "approval threshold: it waits for a manager's approval before it changes stock.",
            )
        return self._change_page(pk)

    def approve_view(self, request, pk):
        return decision_post(
            self,
            request,
            pk,
            decide=lambda pk, user, note: count_sheet_approve(
                sheet_id=pk, approved_by=user, note=note
            ),
            permission=APPROVE_CORRECTION,
            page=CHANGE_PAGE,
            done="Count sheet #{obj.pk} approved and applied.",
            logged="Approved and applied.",
        )

    def reject_view(self, request, pk):
        return decision_post(
            self,
            request,
            pk,
            decide=lambda pk, user, note: count_sheet_reject(
                sheet_id=pk, rejected_by=user, note=note
            ),
            permission=APPROVE_CORRECTION,
            page=CHANGE_PAGE,
            done="Count sheet #{obj.pk} rejected; stock is unchanged.",
            logged="Rejected.",
        )

    def discard_view(self, request, pk):
        require_any(request, IMPORT_COUNTS)
        sheet = get_object_or_404(CountSheet, pk=pk)
        try:
            count_sheet_discard(sheet_id=pk, discarded_by=request.user)
        except CorrectionError as error:
            messages.error(request, str(error))
            return self._change_page(pk)
        sheet.pk = pk  # the row is gone; its history entry keeps its number and name
        LogEntry.objects.log_actions(
            user_id=request.user.pk,
            queryset=[sheet],
            action_flag=DELETION,
            change_message="Discarded; nothing was applied.",
            single_object=True,
        )
        messages.success(request, f"Count sheet #{pk} discarded; nothing was applied.")
        return redirect("admin:corrections_countsheet_changelist")
