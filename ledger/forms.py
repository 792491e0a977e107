from django import forms

from ledger.catalog import parse_sites, parse_skus
from ledger.exceptions import CatalogError


class CatalogImportForm(forms.Form):
    sites = forms.FileField(required=False, help_text="CSV: code,name[,timezone]")
    skus = forms.FileField(required=False, help_text="CSV: code,name,unit_cost[,reorder_point]")

    def clean(self):
        cleaned = super().clean()
        if not cleaned.get("sites") and not cleaned.get("skus"):
            raise forms.ValidationError("Choose a sites file, a SKUs file, or both.")
        for field, parse in (("sites", parse_sites), ("skus", parse_skus)):
            upload = cleaned.get(field)
            if not upload:
                cleaned[f"{field}_rows"] = []
                continue
            try:
                cleaned[f"{field}_rows"] = parse(upload.read(), filename=upload.name)
            except CatalogError as error:
                self.add_error(field, error.problems)
        return cleaned
