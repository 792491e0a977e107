"""RQ jobs of the ingest queue: each takes ids and calls one service."""

import logging
from dataclasses import asdict

from django.conf import settings

from core.logcontext import batch_logged
from ingest.housekeeping import HOUSEKEEPING_CHAIN, housekeeping_run
from ingest.processing import batch_process
from ingest.sweep import ingest_sweep

logger = logging.getLogger(__name__)


def batch_process_job(batch_id: str) -> dict:
    """Apply one stored batch, with queued ones grouped in (the job carries only its id)."""
    with batch_logged(batch_id):
        result = batch_process(batch_id=batch_id, group_events=settings.INGEST_GROUP_EVENTS)
        logger.info("batch %s", ", ".join(f"{key} {value}" for key, value in result.items()))
    return result


def ingest_sweep_job() -> dict:
    return ingest_sweep()


def housekeeping_scheduled_job() -> dict | None:
    """The daily run of the housekeeping chain (on the default queue, not the ingest one)."""
    if not HOUSEKEEPING_CHAIN.claim():
        return None
    report = housekeeping_run()
    for line in report.lines():
        logger.info("housekeeping: %s", line)
    return asdict(report)
