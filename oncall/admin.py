"""Admin for alert rules (thresholds), runbooks (every save is a version) and the audit trails."""

from django import forms
from django.contrib import admin, messages
from django.utils import timezone

from ledger.admin import LinksOnlyWhereAllowedMixin, ReadOnlyAdmin
from oncall import channel_admin  # noqa: F401 (registers the notification channels' admin)
from oncall.exceptions import OncallError
from oncall.measures import measure_shown
from oncall.models import (
    SILENCE_ENDS_AFTER_START,
    SILENCE_NEEDS_A_MATCHER,
    Alert,
    AlertKind,
    AlertRule,
    AlertTransition,
    DiagnosticName,
    NotificationDelivery,
    RemediationAction,
    Runbook,
    RunbookVersion,
    Silence,
)
from oncall.services import runbook_save
from oncall.silences import silence_create, silence_end, silence_problem


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
        "value_shown",
        "threshold_shown",
        "opened_at",
    ]
    list_filter = ["status", "severity", "kind", "site"]
    inlines = [AlertTransitionInline]

    # As people read the measure: "2,050.00 USD" for a mismatch value, "5.0%" for a rate, not
    # the stored "2050.0000" and "0.0500".
    @admin.display(description="value when opened", ordering="value")
    def value_shown(self, alert):
        return measure_shown(alert.value, alert.kind)

    @admin.display(description="threshold", ordering="threshold")
    def threshold_shown(self, alert):
        return measure_shown(alert.threshold, alert.kind)


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


@admin.register(NotificationDelivery)
class NotificationDeliveryAdmin(ReadOnlyAdmin):
    """Every notification and its outcome; written only by the delivery jobs."""

    list_display = [
        "created_at",
        "channel",
        "alert",
        "event",
        "reason",
        "status",
        "attempts",
        "response_status",
        "outcome_excerpt",
        "delivered_at",
    ]
    list_filter = ["status", "event", "reason", "channel"]
    list_select_related = ["channel", "alert"]
    date_hierarchy = "created_at"

    @admin.display(description="outcome")
    def outcome_excerpt(self, delivery: NotificationDelivery) -> str:
        return delivery.outcome[:120]


class SilenceForm(forms.ModelForm):
    class Meta:
        model = Silence
        fields = ["rule", "site", "starts_at", "ends_at", "reason"]
        widgets = {"reason": forms.Textarea(attrs={"rows": 3, "cols": 60})}
        help_texts = {
            "starts_at": "UTC. Now, or later for planned maintenance.",
            "ends_at": "UTC. Notifications resume then; alerts still open are sent.",
            "reason": "Shown with every alert it silences: say why and until what.",
        }

    def clean(self):
        cleaned = super().clean()
        if self.instance.pk or self.errors:
            return cleaned
        problem = silence_problem(
            rule_id=cleaned["rule"].pk if cleaned.get("rule") else None,
            site_id=cleaned["site"].pk if cleaned.get("site") else None,
            starts_at=cleaned["starts_at"],
            ends_at=cleaned["ends_at"],
            reason=cleaned.get("reason", ""),
            now=timezone.now(),
        )
        # The table's constraints report theirs (ModelForm checks them after this).
        if problem and problem not in (SILENCE_NEEDS_A_MATCHER, SILENCE_ENDS_AFTER_START):
            raise forms.ValidationError(problem)
        return cleaned


@admin.register(Silence)
class SilenceAdmin(LinksOnlyWhereAllowedMixin, admin.ModelAdmin):
    """Silences are set here or on an alert's page; once set, one is only ended (by action)."""

    form = SilenceForm
    list_display = ["id", "matcher_label", "starts_at", "ends_at", "reason", "created_by", "state"]
    list_filter = ["rule", "site"]
    list_select_related = ["rule", "site", "created_by"]
    actions = ["end_now"]

    def get_changeform_initial_data(self, request):
        return {"starts_at": timezone.now(), **super().get_changeform_initial_data(request)}

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        return ["rule", "site", "starts_at", "ends_at", "reason", "created_by", "ended_by"]

    def get_fields(self, request, obj=None):
        if obj is None:
            return SilenceForm.Meta.fields
        return self.get_readonly_fields(request, obj)

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="state")
    def state(self, silence: Silence) -> str:
        return silence.state_at(timezone.now())

    def save_model(self, request, obj, form, change):
        created = silence_create(
            user=request.user,
            rule_id=obj.rule_id,
            site_id=obj.site_id,
            starts_at=obj.starts_at,
            ends_at=obj.ends_at,
            reason=obj.reason,
        )
        obj.pk = created.pk

    @admin.action(description="End the selected silences now", permissions=["change"])
    def end_now(self, request, queryset):
        ended = 0
        for silence in queryset:
            try:
                silence_end(silence_id=silence.pk, user=request.user)
            except OncallError as error:
                self.message_user(request, str(error), messages.WARNING)
            else:
                ended += 1
        if ended:
            self.message_user(request, f"Ended {ended} silence(s).", messages.SUCCESS)
