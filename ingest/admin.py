"""Admin for feed sources (tokens shown once, conservation counts), batches and dead letters."""

import json

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.core.exceptions import PermissionDenied
from django.db.models import Q, Sum
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.timezone import localtime

from ingest.dead_letters import dead_letters_discard, dead_letters_replay
from ingest.exceptions import FeedSourceNotAllowed
from ingest.models import (
    BatchStatus,
    DeadLetter,
    DeadLetterStatus,
    FeedSource,
    HeldEvent,
    IngestBatch,
)
from ingest.sources import feed_source_create, feed_source_end_token_grace, feed_source_rotate_token
from ledger.admin import ReadOnlyAdmin

REMEDIATION_PERMISSION = "inventory_ops.run_remediation"


class FeedSourceForm(forms.ModelForm):
    class Meta:
        model = FeedSource
        fields = [
            "name",
            "require_signature",
            "legacy_body_signature",
            "rate_limit_per_minute",
            "is_active",
        ]


@admin.register(FeedSource)
class FeedSourceAdmin(admin.ModelAdmin):
    form = FeedSourceForm
    list_display = [
        "name",
        "token_prefix",
        "token_last_used_at",
        "previous_token",
        "require_signature",
        "legacy_body_signature",
        "rate_limit_per_minute",
        "is_active",
        "total_accepted",
        "total_applied",
        "total_duplicates",
        "total_rejected",
        "total_pending",
        "newest_applied_occurred_at",
    ]
    readonly_fields = [
        "token_prefix",
        "created_at",
        "token_rotated_at",
        "token_last_used_at",
        "previous_token",
    ]
    actions = ["rotate_tokens", "end_token_grace"]

    def get_queryset(self, request):
        # Conservation per source in one grouped query: accepted = applied + duplicates +
        # rejected + pending (held events, and whole batches not processed yet).
        return (
            super()
            .get_queryset(request)
            .annotate(
                sum_accepted=Sum("batches__accepted"),
                sum_applied=Sum("batches__applied"),
                sum_duplicates=Sum("batches__duplicates"),
                sum_rejected=Sum("batches__rejected"),
                sum_held=Sum("batches__held"),
                sum_unprocessed=Sum(
                    "batches__accepted", filter=~Q(batches__status=BatchStatus.DONE)
                ),
            )
        )

    @admin.display(description="previous token")
    def previous_token(self, source):
        """Whether the token before the last rotation still works, until when, and its use."""
        if not source.previous_token_hash or source.previous_token_valid_until <= timezone.now():
            return "none"
        last_used = source.previous_token_last_used_at
        return format_html(
            "works until {}; last used {}",
            date_format(localtime(source.previous_token_valid_until), "DATETIME_FORMAT"),
            date_format(localtime(last_used), "DATETIME_FORMAT") if last_used else "never",
        )

    @admin.display(description="accepted")
    def total_accepted(self, source):
        return source.sum_accepted or 0

    @admin.display(description="applied")
    def total_applied(self, source):
        return source.sum_applied or 0

    @admin.display(description="duplicates")
    def total_duplicates(self, source):
        return source.sum_duplicates or 0

    @admin.display(description="rejected")
    def total_rejected(self, source):
        return source.sum_rejected or 0

    @admin.display(description="pending")
    def total_pending(self, source):
        return (source.sum_held or 0) + (source.sum_unprocessed or 0)

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        try:
            issued = feed_source_create(
                name=form.cleaned_data["name"],
                require_signature=form.cleaned_data["require_signature"],
                created_by=request.user,
            )
        except FeedSourceNotAllowed:
            raise PermissionDenied from None
        FeedSource.objects.filter(pk=issued.source.pk).update(
            rate_limit_per_minute=form.cleaned_data["rate_limit_per_minute"],
            is_active=form.cleaned_data["is_active"],
            legacy_body_signature=form.cleaned_data["legacy_body_signature"],
        )
        obj.pk = issued.source.pk
        obj.refresh_from_db()
        messages.warning(
            request,
            format_html(
                "Feed source {} created. Bearer token, shown once: <code>{}</code>. "
                "Signing secret (for X-Signature, see docs/signing.md), shown once: "
                "<code>{}</code>",
                obj.name,
                issued.token,
                issued.signing_secret,
            ),
        )

    # Without `permissions`, Django offers an action to everyone who may view the list: the
    # view-only roles (managers, on-call) could rotate a token and cut a producer off.
    @admin.action(
        description="Rotate the token of the selected sources (shown once)",
        permissions=["change"],
    )
    def rotate_tokens(self, request, queryset):
        for source in queryset:
            try:
                token = feed_source_rotate_token(source=source, rotated_by=request.user)
            except FeedSourceNotAllowed:
                raise PermissionDenied from None
            self.log_change(request, source, "Token rotated.")
            messages.warning(
                request,
                format_html(
                    "New token for {}, shown once: <code>{}</code>. The old one keeps working "
                    "until {} so the producer can switch (end that early with the action "
                    "'End the previous token's grace period').",
                    source.name,
                    token,
                    date_format(localtime(source.previous_token_valid_until), "DATETIME_FORMAT")
                    if source.previous_token_valid_until
                    else "now",
                ),
            )

    @admin.action(
        description="End the previous token's grace period now (it stops working)",
        permissions=["change"],
    )
    def end_token_grace(self, request, queryset):
        for source in queryset:
            try:
                feed_source_end_token_grace(source=source, ended_by=request.user)
            except FeedSourceNotAllowed:
                raise PermissionDenied from None
            self.log_change(request, source, "The previous token's grace period ended.")
        self.message_user(
            request,
            f"Previous tokens of {queryset.count()} source(s) no longer work.",
            messages.SUCCESS,
        )


@admin.register(IngestBatch)
class IngestBatchAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "source",
        "status",
        "received_at",
        "finished_at",
        "accepted",
        "applied",
        "duplicates",
        "rejected",
        "held",
        "attempts",
    ]
    list_filter = ["status", "source", "body_format"]
    date_hierarchy = "received_at"
    exclude = ["raw_body"]
    readonly_fields = ["dead_letters_link"]

    def get_queryset(self, request):
        return super().get_queryset(request).defer("raw_body").select_related("source")

    @admin.display(description="dead letters")
    def dead_letters_link(self, batch):
        url = reverse("admin:ingest_deadletter_changelist") + f"?batch__id__exact={batch.pk}"
        return format_html('<a href="{}">{} rejected event(s)</a>', url, batch.rejected)


@admin.register(HeldEvent)
class HeldEventAdmin(ReadOnlyAdmin):
    list_display = ["event_id", "order_id", "source", "received_at", "held_until"]
    list_filter = ["source"]
    search_fields = ["order_id", "event_id"]


class DiscardForm(forms.Form):
    note = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Why these events will never be applied (kept with them).",
    )


@admin.register(DeadLetter)
class DeadLetterAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "created_at",
        "source",
        "reason_code",
        "short_reason",
        "event_id",
        "status",
        "replay_count",
    ]
    list_filter = ["status", "reason_code", "source", "created_at"]
    search_fields = ["event_id", "reason"]
    date_hierarchy = "created_at"
    actions = ["replay_selected", "discard_selected"]
    readonly_fields = [
        "source",
        "batch",
        "index",
        "event_id",
        "reason_code",
        "reason",
        "status",
        "payload_pretty",
        "created_at",
        "updated_at",
        "replay_count",
        "replayed_at",
        "replay_outcome",
        "handled_by",
        "discarded_at",
        "discard_note",
    ]
    exclude = ["payload"]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("source", "handled_by")

    @admin.display(description="reason")
    def short_reason(self, letter):
        return letter.reason if len(letter.reason) <= 90 else letter.reason[:87] + "..."

    @admin.display(description="payload")
    def payload_pretty(self, letter):
        try:
            text = json.dumps(json.loads(letter.payload), indent=2, ensure_ascii=False)
        except ValueError:
            text = letter.payload
        return format_html("<pre>{}</pre>", text)

    def has_remediate_permission(self, request):
        return request.user.has_perm(REMEDIATION_PERMISSION)

    def _log_handled(self, request, open_ids: list[int], message: str) -> None:
        """Put each dead letter this action handled in the admin's history, by its new status."""
        handled = DeadLetter.objects.filter(pk__in=open_ids).exclude(status=DeadLetterStatus.OPEN)
        for status in handled.values_list("status", flat=True).distinct():
            LogEntry.objects.log_actions(
                user_id=request.user.pk,
                queryset=handled.filter(status=status),
                action_flag=CHANGE,
                change_message=message.format(status=status),
            )

    @admin.action(description="Replay the selected dead letters", permissions=["remediate"])
    def replay_selected(self, request, queryset):
        open_ids = list(queryset.filter(status=DeadLetterStatus.OPEN).values_list("pk", flat=True))
        summary = dead_letters_replay(
            dead_letter_ids=list(queryset.values_list("pk", flat=True)), actor=request.user
        )
        self._log_handled(request, open_ids, "Replayed: {status}.")
        level = messages.SUCCESS if not summary.still_rejected else messages.WARNING
        self.message_user(
            request,
            f"Replayed: {summary.applied} applied, {summary.duplicates} duplicates, "
            f"{summary.held} held for their order, {summary.still_rejected} still rejected "
            f"(reason updated), {summary.skipped} skipped (not open).",
            level,
        )

    @admin.action(
        description="Discard the selected dead letters (with a note)", permissions=["remediate"]
    )
    def discard_selected(self, request, queryset):
        form = DiscardForm(request.POST if "confirm" in request.POST else None)
        if form.is_valid():
            open_ids = list(
                queryset.filter(status=DeadLetterStatus.OPEN).values_list("pk", flat=True)
            )
            count = dead_letters_discard(
                dead_letter_ids=list(queryset.values_list("pk", flat=True)),
                actor=request.user,
                note=form.cleaned_data["note"],
            )
            self._log_handled(request, open_ids, f"Discarded. Note: {form.cleaned_data['note']}")
            self.message_user(request, f"Discarded {count} dead letter(s).", messages.SUCCESS)
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Discard dead letters",
            "form": form,
            "letters": queryset.filter(status=DeadLetterStatus.OPEN),
            "selected": request.POST.getlist(admin.helpers.ACTION_CHECKBOX_NAME),
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/ingest/discard_dead_letters.html", context)
