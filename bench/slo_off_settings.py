"""The product's settings without the ingest availability middleware (see bench/slo_off.py)."""

from inventory_ops.settings import *  # noqa: F403
from inventory_ops.settings import MIDDLEWARE

MIDDLEWARE = [name for name in MIDDLEWARE if name != "slos.middleware.IngestAvailabilityMiddleware"]
