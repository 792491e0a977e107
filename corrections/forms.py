from django import forms

from core.limits import MAX_QTY
from corrections.countsheets import count_sheet_parse
from corrections.exceptions import CountSheetInvalid
from corrections.models import ReasonCode
from ledger.models import Site, Sku

MAX_SHEET_BYTES = 5 * 1024 * 1024


class CountOrDeltaMixin:
    """Exactly one of counted_qty or delta, and a delta is never 0."""

    def clean_count_or_delta(self, cleaned: dict, *, required: bool = True) -> None:
        counted, delta = cleaned.get("counted_qty"), cleaned.get("delta")
        if counted is not None and delta is not None:
            self.add_error("delta", "Give the counted quantity or a delta, not both.")
        elif counted is None and delta is None and required:
            self.add_error("counted_qty", "Give the counted quantity or a delta.")
        elif delta == 0:
            self.add_error("delta", "A delta of 0 changes nothing.")


class CorrectionForm(CountOrDeltaMixin, forms.Form):
    site = forms.ModelChoiceField(queryset=Site.objects.all(), to_field_name="code")
    sku = forms.ModelChoiceField(
        queryset=Sku.objects.all(),
        to_field_name="code",
        widget=forms.TextInput(attrs={"size": 20, "autocomplete": "off"}),
        label="SKU code",
        error_messages={"invalid_choice": "No SKU has this code."},
    )
    counted_qty = forms.IntegerField(
        required=False,
        min_value=0,
        max_value=MAX_QTY,
        help_text="What is on the shelf now; on_hand is set to it.",
    )
    delta = forms.IntegerField(
        required=False,
        min_value=-MAX_QTY,
        max_value=MAX_QTY,
        help_text="Or: units to add (negative to remove).",
    )
    reason = forms.ChoiceField(choices=ReasonCode.choices)
    note = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)

    def clean(self):
        cleaned = super().clean()
        self.clean_count_or_delta(cleaned)
        return cleaned


class BulkCorrectionLineForm(CountOrDeltaMixin, forms.Form):
    level_id = forms.IntegerField(widget=forms.HiddenInput)
    counted_qty = forms.IntegerField(required=False, min_value=0, max_value=MAX_QTY)
    delta = forms.IntegerField(required=False, min_value=-MAX_QTY, max_value=MAX_QTY)

    def clean(self):
        cleaned = super().clean()
        self.clean_count_or_delta(cleaned, required=False)
        return cleaned


BulkCorrectionFormSet = forms.formset_factory(BulkCorrectionLineForm, extra=0, max_num=500)


class BulkCorrectionCommonForm(forms.Form):
    reason = forms.ChoiceField(choices=ReasonCode.choices)
    note = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)


class DecisionForm(forms.Form):
    note = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)


class CountSheetUploadForm(forms.Form):
    sheet = forms.FileField(help_text="CSV with a header: site,sku,counted_qty")

    def clean_sheet(self):
        upload = self.cleaned_data["sheet"]
        if upload.size > MAX_SHEET_BYTES:
            raise forms.ValidationError("The file is over 5 MiB: split it into several sheets.")
        try:
            self.cleaned_data["rows"] = count_sheet_parse(upload.read())
        except CountSheetInvalid as error:
            self.problems = error.problems
            raise forms.ValidationError(
                f"The sheet has {len(error.problems)} problem(s); nothing was applied."
            ) from None
        return upload
