"""Feed ingest API (`/api/ingest/...`)."""

from ninja import Router

router = Router(tags=["ingest"])
