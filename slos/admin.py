from django.contrib import admin

from slos.models import DESCRIPTIONS, SloTarget


@admin.register(SloTarget)
class SloTargetAdmin(admin.ModelAdmin):
    list_display = ["slo", "measures", "target", "updated_at", "updated_by"]
    fields = ["slo", "measures", "target"]
    readonly_fields = ["slo", "measures", "updated_at", "updated_by"]

    @admin.display(description="What it measures")
    def measures(self, target: SloTarget) -> str:
        return DESCRIPTIONS.get(target.slo, "")

    def has_add_permission(self, request) -> bool:
        return False  # one row per SLO, created with the defaults

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def save_model(self, request, obj, form, change):
        obj.updated_by = request.user
        super().save_model(request, obj, form, change)
