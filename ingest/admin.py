from django.contrib import admin

from ingest.models import FeedSource


@admin.register(FeedSource)
class FeedSourceAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "token_prefix",
        "require_signature",
        "rate_limit_per_minute",
        "is_active",
        "created_at",
    ]
    readonly_fields = ["token_prefix", "created_at", "token_rotated_at"]
