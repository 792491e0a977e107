from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.text import capfirst

from core.money import money_shown
from ledger.forms import CatalogImportForm
from ledger.models import Movement, Site, SiteReorderPoint, Sku, StockLevel
from ledger.services import CATALOG_IMPORT_PERMISSIONS, catalog_import


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


class LinksOnlyWhereAllowedMixin:
    """On a view page, link a related object only for users who may open it.

    Django's read-only fields link every related object that has an admin page, whether or not
    the user may open it (a correction's requester links to the Users admin, 403 for everyone
    but superusers). Here such a field shows the object as plain text instead.
    """

    _plain_fields: dict[str, object]
    # Decimal fields holding money: a view page shows them as money_shown does ("2,050.00 USD"),
    # not as Django shows a DecimalField ("2050.0000").
    money_fields: tuple[str, ...] = ()

    def _plain_field(self, name: str):
        # One callable per field and class: the admin tells read-only fields by identity.
        cache = self.__class__.__dict__.get("_plain_fields")
        if cache is None:
            cache = {}
            self.__class__._plain_fields = cache
        if name not in cache:
            field = self.model._meta.get_field(name)

            if name in self.money_fields:

                def shown(obj, name=name):
                    return money_shown(getattr(obj, name))

            else:

                def shown(obj, attname=field.attname, name=name):
                    return str(getattr(obj, name)) if getattr(obj, attname) is not None else "-"

            shown.short_description = field.verbose_name
            shown.__name__ = name  # the row's class stays "field-<name>"
            cache[name] = shown
        return cache[name]

    def _unlinked(self, request) -> set[str]:
        unlinked = set()
        for field in self.model._meta.concrete_fields:
            if field.is_relation and self.admin_site.is_registered(field.related_model):
                related_admin = self.admin_site.get_model_admin(field.related_model)
                if not related_admin.has_view_permission(request):
                    unlinked.add(field.name)
        return unlinked

    def _plain_where_unlinked(self, request, names, *, money: set[str] | None = None):
        plain = self._unlinked(request) | (set(self.money_fields) if money is None else money)
        return [
            self._plain_field(name) if isinstance(name, str) and name in plain else name
            for name in names
        ]

    def get_fields(self, request, obj=None):
        # A money field stays an input where the user may change it: only the read-only ones
        # are shown as money.
        money = set(self.money_fields)
        if self.has_change_permission(request, obj):
            money &= set(super().get_readonly_fields(request, obj))
        fields = self._plain_where_unlinked(request, super().get_fields(request, obj), money=money)
        # A field swapped here and among the read-only ones appears twice: show it once.
        return list(dict.fromkeys(fields))

    def get_readonly_fields(self, request, obj=None):
        return self._plain_where_unlinked(request, super().get_readonly_fields(request, obj))


class ReadOnlyAdmin(LinksOnlyWhereAllowedMixin, admin.ModelAdmin):
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

    def may_import_catalog(self, request) -> bool:
        return request.user.has_perms(CATALOG_IMPORT_PERMISSIONS)

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "may_import": self.may_import_catalog(request)}
        return super().changelist_view(request, extra_context)

    def catalog_import_view(self, request):
        if not self.may_import_catalog(request):
            raise PermissionDenied(
                "You need permission to add and change sites and SKUs to import a catalog."
            )
        form = CatalogImportForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            sites, skus = form.cleaned_data["sites_rows"], form.cleaned_data["skus_rows"]
            counts = catalog_import(sites=sites, skus=skus, imported_by=request.user)
            for model, rows in ((Site, sites), (Sku, skus)):
                if rows:  # in the admin's history, as an edit by hand would be
                    LogEntry.objects.log_actions(
                        user_id=request.user.pk,
                        queryset=model.objects.filter(code__in=[row.code for row in rows]),
                        action_flag=CHANGE,
                        change_message="Imported from a catalog file.",
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
class SkuAdmin(CatalogImportMixin, LinksOnlyWhereAllowedMixin, admin.ModelAdmin):
    list_display = ["code", "name", "unit_cost_shown", "reorder_point"]
    search_fields = ["code", "name"]
    money_fields = ("unit_cost",)
    inlines = [SiteReorderPointInline]

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if db_field.name in self.money_fields and field is not None:
            field.label = f"{capfirst(db_field.verbose_name)} ({settings.INVENTORY_CURRENCY})"
        return field

    @admin.display(description="unit cost", ordering="unit_cost")
    def unit_cost_shown(self, sku):
        return money_shown(sku.unit_cost)


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
