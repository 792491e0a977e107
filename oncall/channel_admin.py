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


class NotificationChannelForm(forms.ModelForm):
    class Meta:
        model = NotificationChannel
        fields = [
            "name",
            "kind",
            "url",
            "payload_format",
            "recipients",
            "min_severity",
            "on_firing",
            "on_acknowledged",
            "on_resolved",
            "enabled",
        ]
        widgets = {"recipients": forms.Textarea(attrs={"rows": 3, "cols": 60})}

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
        return cleaned


@admin.register(NotificationChannel)
class NotificationChannelAdmin(admin.ModelAdmin):
    """Where alert notifications go. Each notification's outcome: Notification deliveries."""

    form = NotificationChannelForm
    list_display = ["name", "kind", "destination", "min_severity", "enabled"]
    list_filter = ["kind", "enabled"]
    list_editable = ["enabled"]
    search_fields = ["name", "url", "recipients"]

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
