"""Corrections in the admin: preview, apply, approve or reject with a note, reverse."""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from core.money import money_shown
from corrections.admin.decisions import decision_post, require_any
from corrections.approval import APPROVE_CORRECTION, CORRECT_STOCK, approval_threshold
from corrections.exceptions import CorrectionError, CorrectionNotAllowed
from corrections.forms import (
    BulkCorrectionCommonForm,
    BulkCorrectionFormSet,
    CorrectionForm,
    DecisionForm,
)
from corrections.models import (
    Correction,
    CorrectionStatus,
)
from corrections.selectors import approvals_waiting, correction_preview
from corrections.services import (
    CorrectionDraft,
    correction_approve,
    correction_reject,
    correction_reverse,
    corrections_request,
)
from ledger.admin import ReadOnlyAdmin, StockLevelAdmin
from ledger.models import StockLevel

# The largest key a row can have (64-bit): a bigger one names no row, and SQLite refuses to
# compare a column with it (OverflowError, a 500).
_MAX_ROW_ID = 2**63 - 1


def _is_row_id(text: str) -> bool:
    return text.isascii() and text.isdigit() and int(text) <= _MAX_ROW_ID


CHANGE_PAGE = "admin:corrections_correction_change"


@admin.register(Correction)
class CorrectionAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "requested_at",
        "site",
        "sku",
        "asked",
        "applied_delta",
        "reason",
        "status",
        "value_shown",
        "requested_by",
        "decided_by",
        "reverses",
    ]
    list_filter = ["status", "reason", "site"]
    search_fields = ["sku__code", "sku__name", "note"]
    list_select_related = ["site", "sku", "requested_by", "decided_by", "reverses"]
    date_hierarchy = "requested_at"
    actions = ["approve_selected"]
    change_form_template = "admin/corrections/correction/change_form.html"
    readonly_fields = [field.name for field in Correction._meta.fields]
    money_fields = ("value",)

    # The value as money ("2,050.00 USD"), not the stored "2050.0000".
    @admin.display(description="value", ordering="value")
    def value_shown(self, correction):
        return money_shown(correction.value)

    # Corrections are written only by the services: the admin never edits or deletes one
    # (ReadOnlyAdmin); adding goes through the preview form below.
    def has_view_permission(self, request, obj=None):
        return any(
            request.user.has_perm(permission)
            for permission in (CORRECT_STOCK, APPROVE_CORRECTION, "corrections.view_correction")
        )

    def has_add_permission(self, request):
        return request.user.has_perm(CORRECT_STOCK)

    def has_approve_correction_permission(self, request):
        return request.user.has_perm(APPROVE_CORRECTION)

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("bulk/", view(self.bulk_view), name="corrections_correction_bulk"),
            path("waiting/", view(self.waiting_view), name="corrections_correction_waiting"),
            path(
                "<int:pk>/approve/", view(self.approve_view), name="corrections_correction_approve"
            ),
            path("<int:pk>/reject/", view(self.reject_view), name="corrections_correction_reject"),
            path(
                "<int:pk>/reverse/", view(self.reverse_view), name="corrections_correction_reverse"
            ),
            *super().get_urls(),
        ]

    def _context(self, request, **extra):
        return {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "threshold": approval_threshold(),
            **extra,
        }

    def add_view(self, request, form_url="", extra_context=None):
        """Correction form: preview (before, after, value), then apply."""
        require_any(request, CORRECT_STOCK)
        form = CorrectionForm(request.POST or None, initial=request.GET.dict())
        preview = None
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            if "_apply" in request.POST:
                draft = CorrectionDraft(
                    site=data["site"].code,
                    sku=data["sku"].code,
                    reason=data["reason"],
                    note=data["note"],
                    counted_qty=data["counted_qty"],
                    delta=data["delta"],
                )
                try:
                    [correction] = corrections_request(drafts=[draft], requested_by=request.user)
                except CorrectionNotAllowed:
                    raise PermissionDenied from None
                except CorrectionError as error:
                    form.add_error(None, str(error))
                else:
                    self._report(request, [correction])
                    self._log_requested(request, [correction])
                    return redirect(
                        reverse("admin:corrections_correction_change", args=[correction.pk])
                    )
            if form.is_valid():
                try:
                    preview = correction_preview(
                        site=data["site"],
                        sku=data["sku"],
                        counted_qty=data["counted_qty"],
                        delta=data["delta"],
                        requested_by=request.user,
                    )
                except CorrectionError as error:
                    form.add_error(None, str(error))
        context = self._context(request, title="Correct stock", form=form, preview=preview)
        return TemplateResponse(request, "admin/corrections/correction_add.html", context)

    def waiting_view(self, request):
        """For managers: every correction and count sheet waiting for a decision."""
        require_any(request, APPROVE_CORRECTION)
        context = self._context(request, title="Waiting for approval", waiting=approvals_waiting())
        return TemplateResponse(request, "admin/corrections/waiting.html", context)

    def _report(self, request, corrections) -> None:
        for correction in corrections:
            if correction.status == CorrectionStatus.APPLIED:
                messages.success(
                    request,
                    f"Correction #{correction.pk} applied: {correction.site.code}/"
                    f"{correction.sku.code} {correction.on_hand_before} → "
                    f"{correction.on_hand_after}.",
                )
            elif correction.value > approval_threshold():
                messages.warning(
                    request,
                    f"Correction #{correction.pk} is worth {correction.value:.2f}, above the "
                    f"approval threshold: it waits for a manager's approval before it changes "
                    "stock.",
                )
            else:
                messages.warning(
                    request,
                    f"Correction #{correction.pk} is worth {correction.value:.2f}; with the "
                    "corrections you applied to this stock level in the last 24 hours it is "
                    "above the approval threshold: it waits for a manager's approval before it "
                    "changes stock.",
                )

    def _log_requested(self, request, corrections) -> None:
        """Put each new correction in the admin's history, as the admin's own add view does."""
        for correction in corrections:
            outcome = (
                "applied" if correction.status == CorrectionStatus.APPLIED else "waits for approval"
            )
            self.log_addition(
                request,
                correction,
                f"Requested {correction.asked} ({correction.reason}), worth "
                f"{correction.value:.2f}: {outcome}.",
            )

    def bulk_view(self, request):
        """Correct several stock levels at once (from the stock level list's action)."""
        require_any(request, CORRECT_STOCK)
        source = request.POST if request.method == "POST" else request.GET
        # ASCII digits only ("²".isdigit() is true, and int() refuses it), within a key's range.
        ids = [int(pk) for pk in source.get("levels", "").split(",") if _is_row_id(pk)]
        levels = {
            level.pk: level
            for level in StockLevel.objects.filter(pk__in=ids).select_related("site", "sku")
        }
        if not levels:
            messages.error(request, "Select at least one stock level to correct.")
            return redirect("admin:inventory_ops_stocklevel_changelist")
        if request.method == "POST":
            formset = BulkCorrectionFormSet(request.POST)
            common = BulkCorrectionCommonForm(request.POST)
        else:
            formset = BulkCorrectionFormSet(initial=[{"level_id": pk} for pk in sorted(levels)])
            common = BulkCorrectionCommonForm()
        previews: dict[int, object] = {}
        if request.method == "POST" and formset.is_valid() and common.is_valid():
            lines = [
                line
                for line in formset.cleaned_data
                if line.get("level_id") in levels
                and (line.get("counted_qty") is not None or line.get("delta") is not None)
            ]
            if not lines:
                common.add_error(None, "Enter a counted quantity or a delta on at least one line.")
            elif "_apply" in request.POST:
                drafts = [
                    CorrectionDraft(
                        site=levels[line["level_id"]].site.code,
                        sku=levels[line["level_id"]].sku.code,
                        reason=common.cleaned_data["reason"],
                        note=common.cleaned_data["note"],
                        counted_qty=line["counted_qty"],
                        delta=line["delta"],
                    )
                    for line in lines
                ]
                try:
                    corrections = corrections_request(drafts=drafts, requested_by=request.user)
                except CorrectionNotAllowed:
                    raise PermissionDenied from None
                except CorrectionError as error:
                    common.add_error(None, str(error))
                else:
                    self._report(request, corrections)
                    self._log_requested(request, corrections)
                    return redirect("admin:corrections_correction_changelist")
            else:
                try:
                    previews = {
                        line["level_id"]: correction_preview(
                            site=levels[line["level_id"]].site,
                            sku=levels[line["level_id"]].sku,
                            counted_qty=line["counted_qty"],
                            delta=line["delta"],
                            requested_by=request.user,
                        )
                        for line in lines
                    }
                except CorrectionError as error:
                    common.add_error(None, str(error))
        rows = []
        for row_form in formset:
            level_id = row_form["level_id"].value()
            level_id = int(level_id) if _is_row_id(str(level_id)) else None
            rows.append((row_form, levels.get(level_id), previews.get(level_id)))
        context = self._context(
            request,
            title="Correct selected stock levels",
            formset=formset,
            common=common,
            rows=rows,
            previewed=bool(previews),
            level_ids=",".join(str(pk) for pk in sorted(levels)),
        )
        return TemplateResponse(request, "admin/corrections/correction_bulk.html", context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        correction = get_object_or_404(Correction, pk=object_id)
        user = request.user
        extra_context = {
            **(extra_context or {}),
            "can_decide": correction.status == CorrectionStatus.PENDING
            and user.has_perm(APPROVE_CORRECTION)
            and correction.requested_by_id != user.pk,
            "can_reverse": correction.status == CorrectionStatus.APPLIED
            and bool(correction.applied_delta)
            and user.has_perm(CORRECT_STOCK)
            and not correction.reversals.exclude(status=CorrectionStatus.REJECTED).exists(),
            "decision_form": DecisionForm(),
            "decision_explanation": f"Worth {correction.value:.2f}: above the threshold. "
            "Approving applies it now (a counted quantity is compared with stock as it is at "
            "that moment).",
            "reverse_form": DecisionForm(auto_id="id_reverse_%s"),
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def approve_view(self, request, pk):
        return decision_post(
            self,
            request,
            pk,
            decide=lambda pk, user, note: correction_approve(
                correction_id=pk, approved_by=user, note=note
            ),
            permission=APPROVE_CORRECTION,
            page=CHANGE_PAGE,
            done="Correction #{obj.pk} approved and applied.",
            logged="Approved and applied ({obj.applied_delta:+d}).",
        )

    def reject_view(self, request, pk):
        return decision_post(
            self,
            request,
            pk,
            decide=lambda pk, user, note: correction_reject(
                correction_id=pk, rejected_by=user, note=note
            ),
            permission=APPROVE_CORRECTION,
            page=CHANGE_PAGE,
            done="Correction #{obj.pk} rejected; stock is unchanged.",
            logged="Rejected.",
        )

    def reverse_view(self, request, pk):
        def reverse_and_log(pk, user, note):
            reversal = correction_reverse(correction_id=pk, requested_by=user, note=note)
            self._log_requested(request, [reversal])
            self.log_change(
                request, reversal.reverses, f"Reversal requested: correction #{reversal.pk}."
            )
            return reversal

        return decision_post(
            self,
            request,
            pk,
            decide=reverse_and_log,
            permission=CORRECT_STOCK,
            page=CHANGE_PAGE,
            done="Reversing correction #{obj.pk} recorded ({obj.status}).",
        )

    @admin.action(
        description="Approve the selected corrections", permissions=["approve_correction"]
    )
    def approve_selected(self, request, queryset):
        approved = 0
        for pk in queryset.filter(status=CorrectionStatus.PENDING).values_list("pk", flat=True):
            try:
                correction = correction_approve(correction_id=pk, approved_by=request.user)
            except CorrectionError as error:
                messages.error(request, f"#{pk}: {error}")
            else:
                approved += 1
                self.log_change(request, correction, "Approved and applied (list action).")
        if approved:
            messages.success(request, f"{approved} correction(s) approved and applied.")


# The stock level list (read-only, owned by inventory_ops) gains the bulk correction action.
admin.site.unregister(StockLevel)


@admin.register(StockLevel)
class StockLevelWithCorrectionsAdmin(StockLevelAdmin):
    actions = ["correct_selected"]

    def has_correct_stock_permission(self, request):
        return request.user.has_perm(CORRECT_STOCK)

    @admin.action(description="Correct the selected stock levels", permissions=["correct_stock"])
    def correct_selected(self, request, queryset):
        ids = ",".join(str(pk) for pk in queryset.values_list("pk", flat=True)[:500])
        return redirect(f"{reverse('admin:corrections_correction_bulk')}?levels={ids}")
