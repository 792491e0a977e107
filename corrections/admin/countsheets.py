"""Count sheets in the admin: upload and preview, apply (or submit for approval), decide."""

from django.contrib import admin, messages
from django.contrib.admin.models import DELETION, LogEntry
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.views.decorators.http import require_POST

from corrections.admin.decisions import decision_post, require_any
from corrections.exceptions import CorrectionError
from corrections.forms import CountSheetUploadForm, DecisionForm
from corrections.models import CountSheet, CountSheetStatus
from corrections.selectors import count_sheet_preview
from corrections.services import (
    APPROVE_CORRECTION,
    IMPORT_COUNTS,
    approval_threshold,
    count_sheet_apply,
    count_sheet_approve,
    count_sheet_create,
    count_sheet_discard,
    count_sheet_reject,
)
from ledger.admin import ReadOnlyAdmin

CHANGE_PAGE = "admin:corrections_countsheet_change"


@admin.register(CountSheet)
class CountSheetAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "filename",
        "status",
        "line_count",
        "value",
        "uploaded_by",
        "uploaded_at",
        "decided_by",
    ]
    list_filter = ["status"]
    list_select_related = ["uploaded_by", "applied_by", "decided_by"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(line_count=Count("lines"))

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
        return [
            path(
                f"<int:pk>/{name}/",
                view(require_POST(getattr(self, f"{name}_view"))),
                name=f"corrections_countsheet_{name}",
            )
            for name in ("apply", "discard", "approve", "reject")
        ] + super().get_urls()

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
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Import a count sheet",
            "form": form,
            "problems": getattr(form, "problems", []),
        }
        return TemplateResponse(request, "admin/corrections/countsheet_upload.html", context)

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
