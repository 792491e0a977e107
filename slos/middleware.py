"""Counting every answer to an ingest POST for the ingest availability SLO.

Outermost in MIDDLEWARE (after the request id), so that it sees the answers given by every
layer: the outage middleware's 503s while the database is away, the views' 503s when a batch
could not be stored, and a 500 from anything that failed unexpectedly. An answer the process
never gives (it was killed; the proxy answered 502) is not counted here.
"""

from slos.counters import ingest_answers

INGEST_PATH = "/api/ingest/events"


class IngestAvailabilityMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if request.method == "POST" and request.path.rstrip("/") == INGEST_PATH:
            ingest_answers.answer_count(response.status_code)
        # On any request, not only ingest POSTs: the 503s counted during an outage are written
        # by whatever request comes first once the database is back.
        ingest_answers.flush_if_due()
        return response
