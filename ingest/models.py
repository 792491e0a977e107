"""Feed sources: who may push events, with what credentials."""

from django.db import models


class FeedSource(models.Model):
    """A producer of events (courier app, WMS, 3PL). Its token is stored only as a hash."""

    name = models.CharField(max_length=100, unique=True)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    token_prefix = models.CharField(
        max_length=16, editable=False, help_text="The token's first characters, to recognise it."
    )
    # Kept in clear: verifying an HMAC needs the secret itself.
    signing_secret = models.CharField(max_length=128, blank=True, editable=False)
    require_signature = models.BooleanField(
        default=False, help_text="Refuse requests without a valid X-Signature header."
    )
    rate_limit_per_minute = models.PositiveIntegerField(
        default=600, help_text="Requests per minute before answering 429."
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    token_rotated_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
