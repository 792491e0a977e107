"""RQ jobs of the ingest queue: each takes ids and calls one service."""

from django.conf import settings

from ingest.services import batch_process, ingest_sweep


def batch_process_job(batch_id: str) -> dict:
    """Apply one stored batch, with queued ones grouped in (the job carries only its id)."""
    return batch_process(batch_id=batch_id, group_events=settings.INGEST_GROUP_EVENTS)


def ingest_sweep_job() -> dict:
    return ingest_sweep()
