"""Admin of notification channels: where alerts go, and a button that sends a test through one.

Kept apart from oncall/admin.py (rules, runbooks, the logs) so each stays small.
"""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.validators import validate_email
from django.shortcuts import get_object_or_404, redirect
from django.urls import path
from django.views.decorators.http import require_POST

from oncall.channel_check import channel_test_send
from oncall.models import NotificationChannel
from oncall.notifications import DeliveryFailed

# The secrets of a webhook: typed, never shown back. Empty keeps what is stored.
SECRET_FIELDS = {
    "signing_secret": "signing secret",
    "authorization": "Authorization header",
}


def _secret_field(label: str, max_length: int) -> forms.CharField:
    """A write-only field: the browser never gets the stored value back."""
    return forms.CharField(
        label=label,
        required=False,
        max_length=max_length,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )


class NotificationChannelForm(forms.ModelForm):
    signing_secret = _secret_field("Signing secret", 200)
    clear_signing_secret = forms.BooleanField(label="Remove the signing secret", required=False)
    authorization = _secret_field("Authorization header", 1000)
    clear_authorization = forms.BooleanField(
        label="Remove the Authorization header", required=False
    )

    class Meta:
        model = NotificationChannel
        fields = [
            "name",
            "kind",
            "url",
            "payload_format",
            "signing_secret",
            "clear_signing_secret",
            "authorization",
            "clear_authorization",
            "recipients",
            "min_severity",
            "on_firing",
            "on_acknowledged",
            "on_resolved",
            "enabled",
        ]
        widgets = {"recipients": forms.Textarea(attrs={"rows": 3, "cols": 60})}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name, label in SECRET_FIELDS.items():
            model_help = NotificationChannel._meta.get_field(name).help_text
            self.initial[name] = ""  # never sent back to the browser
            if getattr(self.instance, name):
                self.fields[name].help_text = (
                    f"A {label} is set (not shown). Type a new one to replace it, leave this "
                    f"empty to keep it. {model_help}"
                )
            else:
                self.fields[name].help_text = f"Not set. {model_help}"
                self.fields[f"clear_{name}"].widget = forms.HiddenInput()

    def clean(self):
        cleaned = super().clean()
        kind = cleaned.get("kind")
        webhook = kind in (NotificationChannel.Kind.WEBHOOK, NotificationChannel.Kind.SLACK)
        if webhook and not cleaned.get("url") and "url" not in self.errors:
            self.add_error("url", "A webhook needs the URL to POST notifications to.")
        if kind == NotificationChannel.Kind.EMAIL:
            addresses = NotificationChannel(recipients=cleaned.get("recipients", "")).recipient_list
            if not addresses:
                self.add_error("recipients", "Email needs at least one address.")
            for address in addresses:
                try:
                    validate_email(address)
                except ValidationError:
                    self.add_error("recipients", f"{address!r} is not an email address.")
        self._secrets_clean(cleaned, webhook=webhook)
        return cleaned

    def _post_clean(self):
        super()._post_clean()
        # Set even when the field was left out of the POST (Django would then keep the stored
        # value, so "remove" would not remove).
        for name in SECRET_FIELDS:
            if name in self.cleaned_data:
                setattr(self.instance, name, self.cleaned_data[name])

    def _secrets_clean(self, cleaned: dict, *, webhook: bool) -> None:
        for name, label in SECRET_FIELDS.items():
            typed = cleaned.get(name, "")
            if cleaned.get(f"clear_{name}"):
                if typed:
                    self.add_error(name, f"Type a new {label} or remove it, not both.")
                cleaned[name] = ""
            elif not typed:
                cleaned[name] = getattr(self.instance, name)  # kept as it is
            elif not webhook:
                self.add_error(name, f"Only webhooks send a {label}; email has none.")
        value = cleaned.get("authorization", "")
        if any(character in value for character in "\r\n\0"):
            self.add_error("authorization", "The Authorization header must be one line.")


@admin.register(NotificationChannel)
class NotificationChannelAdmin(admin.ModelAdmin):
    """Where alert notifications go. Each notification's outcome: Notification deliveries."""

    form = NotificationChannelForm
    list_display = ["name", "kind", "destination", "min_severity", "enabled"]
    list_filter = ["kind", "enabled"]
    list_editable = ["enabled"]
    search_fields = ["name", "url", "recipients"]

    readonly_fields = ["authentication"]

    def get_fields(self, request, obj=None):
        fields = super().get_fields(request, obj)
        if obj is not None and not self.has_change_permission(request, obj):
            # A viewer's page shows every field's value as text: never the secrets.
            hidden = {*SECRET_FIELDS, *(f"clear_{name}" for name in SECRET_FIELDS)}
            fields = [name for name in fields if name not in hidden]
        return fields

    @admin.display(description="authentication")
    def authentication(self, channel: NotificationChannel) -> str:
        if channel.kind == NotificationChannel.Kind.EMAIL:
            return "none (email)"
        parts = []
        if channel.signing_secret:
            parts.append("signed (HMAC-SHA256, secret set)")
        if channel.authorization:
            parts.append("Authorization header set")
        return ", ".join(parts) or "none"

    @admin.display(description="sent to")
    def destination(self, channel: NotificationChannel) -> str:
        if channel.kind == NotificationChannel.Kind.EMAIL:
            return ", ".join(channel.recipient_list)
        return channel.url

    def get_urls(self):
        return [
            path(
                "<int:pk>/test-send/",
                self.admin_site.admin_view(require_POST(self.test_send_view)),
                name="oncall_notificationchannel_test_send",
            ),
            *super().get_urls(),
        ]

    def test_send_view(self, request, pk: int):
        """Send a test notification with the channel's saved settings; say what came back."""
        channel = get_object_or_404(NotificationChannel, pk=pk)
        if not self.has_change_permission(request, channel):
            raise PermissionDenied
        try:
            sent = channel_test_send(channel, by=request.user.get_username())
        except DeliveryFailed as error:
            self.message_user(
                request, f"Test notification to {channel} failed: {error}", messages.ERROR
            )
        else:
            self.message_user(
                request, f"Test notification sent to {channel}: {sent.detail}", messages.SUCCESS
            )
        return redirect("admin:oncall_notificationchannel_change", channel.pk)

    def render_change_form(self, request, context, *args, obj=None, **kwargs):
        context["can_test_send"] = obj is not None and self.has_change_permission(request, obj)
        return super().render_change_form(request, context, *args, obj=obj, **kwargs)
