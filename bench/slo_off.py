"""The ingest stack with the SLO counters switched off, for `bench/ingest_ab.py` only.

Nothing of the product changes: the benchmark starts Daphne with `bench.slo_off_settings`
(the product's settings without `IngestAvailabilityMiddleware`, so no answer is counted and
nothing is flushed) and the workers with `SloOffWorker` (the product's `IngestWorker`, with
`slo_count_after_commit` replaced by a function that registers nothing, so no batch counts its
freshness or correctness after its commit). Everything else is the same code and settings.
"""

import kpis.rollups
import slos.counters
from ingest.worker import IngestWorker


def _not_counted(*args, **kwargs) -> None:
    return None


# ingest.settle calls slos.counters.slo_count_lines, which looks this name up in its module;
# kpis.rollups imported the function itself.
slos.counters.slo_count_after_commit = _not_counted
kpis.rollups.slo_count_after_commit = _not_counted


class SloOffWorker(IngestWorker):
    pass
