"""Admin for alert rules (thresholds), runbooks (every save is a version) and the audit trails."""

from django import forms
from django.contrib import admin

from ledger.admin import LinksOnlyWhereAllowedMixin, ReadOnlyAdmin
from oncall.models import (
    Alert,
    AlertKind,
    AlertRule,
    AlertTransition,
    DiagnosticName,
    RemediationAction,
    Runbook,
    RunbookVersion,
)
from oncall.services import runbook_save


@admin.register(AlertRule)
class AlertRuleAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "kind",
        "scope_label",
        "severity",
        "threshold",
        "hold_seconds",
        "window",
        "enabled",
    ]
    list_filter = ["kind", "severity", "enabled", "site"]
    list_editable = ["severity", "threshold", "hold_seconds", "enabled"]
    search_fields = ["name"]


class AlertTransitionInline(LinksOnlyWhereAllowedMixin, admin.TabularInline):
    model = AlertTransition
    extra = 0
    can_delete = False
    readonly_fields = ["from_status", "to_status", "at", "by", "note"]

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    """Alerts move only through their lifecycle (console buttons and the evaluator)."""

    list_display = [
        "id",
        "title",
        "kind",
        "severity",
        "site",
        "status",
        "value",
        "threshold",
        "opened_at",
    ]
    list_filter = ["status", "severity", "kind", "site"]
    inlines = [AlertTransitionInline]


class RunbookForm(forms.ModelForm):
    alert_kinds = forms.MultipleChoiceField(
        choices=AlertKind.choices, required=False, widget=forms.CheckboxSelectMultiple
    )
    diagnostics = forms.MultipleChoiceField(
        choices=DiagnosticName.choices, required=False, widget=forms.CheckboxSelectMultiple
    )

    class Meta:
        model = Runbook
        fields = ["slug", "title", "owner", "last_reviewed", "alert_kinds", "diagnostics", "body"]
        widgets = {"body": forms.Textarea(attrs={"rows": 30, "cols": 100})}


class RunbookVersionInline(LinksOnlyWhereAllowedMixin, admin.TabularInline):
    model = RunbookVersion
    extra = 0
    can_delete = False
    fields = ["number", "edited_at", "edited_by", "title", "last_reviewed"]
    readonly_fields = fields
    ordering = ["-number"]

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Runbook)
class RunbookAdmin(admin.ModelAdmin):
    form = RunbookForm
    list_display = ["title", "slug", "owner", "last_reviewed", "updated_at"]
    search_fields = ["title", "slug", "body"]
    inlines = [RunbookVersionInline]
    view_on_site = True

    def save_model(self, request, obj, form, change):
        runbook_save(runbook=obj, edited_by=request.user)

    def get_view_on_site_url(self, obj=None):
        return f"/oncall/runbooks/{obj.slug}/" if obj else None


@admin.register(RemediationAction)
class RemediationActionAdmin(ReadOnlyAdmin):
    list_display = ["requested_at", "actor", "kind", "target", "status", "finished_at"]
    list_filter = ["kind", "status"]
