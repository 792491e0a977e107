"""The RQ queues (settings.RQ_QUEUES names them too): one place for their names."""

INGEST_QUEUE = "ingest"  # batches of feed events
DEFAULT_QUEUE = "default"  # alert evaluations, housekeeping, remediations
QUEUE_NAMES = (INGEST_QUEUE, DEFAULT_QUEUE)
