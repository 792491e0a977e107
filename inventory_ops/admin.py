from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path

from inventory_ops.forms import CatalogImportForm
from inventory_ops.models import Movement, Site, SiteReorderPoint, Sku, StockLevel
from inventory_ops.services import catalog_import


class BoundedDatesChangeList(ChangeList):
    """A change list whose date drill-down refuses dates no datetime can hold.

    Django turns a bad `<field>__year` into "incorrect lookup parameters" only when the date
    cannot be built; a year of 9999 (the next year is 10000) or of twenty digits raised
    ValueError or OverflowError past it, a 500.
    """

    def get_filters(self, request):
        try:
            return super().get_filters(request)
        except (ValueError, OverflowError) as error:
            raise IncorrectLookupParameters(error) from error


class ReadOnlyAdmin(admin.ModelAdmin):
    """Stock levels and movements change only through the stock services."""

    def get_changelist(self, request, **kwargs):
        return BoundedDatesChangeList

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class CatalogImportMixin:
    change_list_template = "admin/inventory_ops/catalog_changelist.html"

    def get_urls(self):
        opts = self.model._meta
        return [
            path(
                "import-catalog/",
                self.admin_site.admin_view(self.catalog_import_view),
                name=f"{opts.app_label}_{opts.model_name}_import_catalog",
            ),
            *super().get_urls(),
        ]

    def catalog_import_view(self, request):
        if not (
            request.user.has_perm("inventory_ops.add_site")
            and request.user.has_perm("inventory_ops.add_sku")
        ):
            messages.error(
                request, "You need permission to add sites and SKUs to import a catalog."
            )
            return redirect("..")
        form = CatalogImportForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            counts = catalog_import(
                sites=form.cleaned_data["sites_rows"], skus=form.cleaned_data["skus_rows"]
            )
            messages.success(
                request,
                "Catalog imported: {sites_created} sites created, {sites_updated} updated; "
                "{skus_created} SKUs created, {skus_updated} updated.".format(**counts),
            )
            return redirect("..")
        context = {
            **self.admin_site.each_context(request),
            "title": "Import catalog",
            "form": form,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/inventory_ops/catalog_import.html", context)


@admin.register(Site)
class SiteAdmin(CatalogImportMixin, admin.ModelAdmin):
    list_display = ["code", "name", "timezone"]
    search_fields = ["code", "name"]


class SiteReorderPointInline(admin.TabularInline):
    model = SiteReorderPoint
    extra = 0


@admin.register(Sku)
class SkuAdmin(CatalogImportMixin, admin.ModelAdmin):
    list_display = ["code", "name", "unit_cost", "reorder_point"]
    search_fields = ["code", "name"]
    inlines = [SiteReorderPointInline]


@admin.register(StockLevel)
class StockLevelAdmin(ReadOnlyAdmin):
    list_display = ["site", "sku", "on_hand", "reserved", "available", "updated_at"]
    list_filter = ["site"]
    search_fields = ["sku__code", "sku__name"]
    list_select_related = ["site", "sku"]


@admin.register(Movement)
class MovementAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "occurred_at",
        "site",
        "sku",
        "kind",
        "on_hand_delta",
        "reserved_delta",
        "on_hand_after",
        "cause",
        "cause_ref",
        "user",
    ]
    list_filter = ["kind", "cause", "site"]
    search_fields = ["sku__code", "cause_ref"]
    list_select_related = ["site", "sku", "user"]
    date_hierarchy = "occurred_at"
    show_full_result_count = False
