"""Signals the ingest side sends; other apps subscribe (arrows point one way)."""

from django.dispatch import Signal

# Sent by every worker's heartbeat thread after each beat Redis accepted (every
# WORKER_HEARTBEAT_SECONDS): periodic checks of other apps subscribe to it. Receivers must be
# quick; an exception in one is logged and does not stop the others.
worker_beat = Signal()
