"""Forms of the on-call pages: what a person types, checked before any service runs."""

from django import forms

from ledger.models import Site
from oncall.models import AlertRule

SILENCE_DURATIONS = [
    (30, "30 minutes"),
    (60, "1 hour"),
    (120, "2 hours"),
    (240, "4 hours"),
    (480, "8 hours"),
    (1440, "24 hours"),
    (4320, "3 days"),
]


class SilenceForm(forms.Form):
    rule = forms.ModelChoiceField(
        AlertRule.objects.all(), required=False, empty_label="any rule", label="Rule"
    )
    site = forms.ModelChoiceField(
        Site.objects.all(), required=False, to_field_name="code", empty_label="any site"
    )
    minutes = forms.TypedChoiceField(choices=SILENCE_DURATIONS, coerce=int, initial=60, label="For")
    reason = forms.CharField(
        max_length=1000,
        help_text="Shown with every alert it silences: say why.",
        error_messages={"required": "Say why: a silence needs a reason."},
    )

    def clean(self):
        cleaned = super().clean()
        if not self.errors and not cleaned.get("rule") and not cleaned.get("site"):
            raise forms.ValidationError("A silence must name a rule, a site or both.")
        return cleaned
