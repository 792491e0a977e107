"""Feed ingest API (`/api/ingest/...`): every answer, errors included, is JSON."""

import logging
import time
import uuid

from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError
from django.http import HttpRequest, JsonResponse
from ninja import Router
from redis.exceptions import RedisError

from ingest.auth import FeedTokenAuth, signature_check, signature_claim, signature_release
from ingest.parsing import (
    CONTENT_ENCODINGS,
    CONTENT_TYPES,
    MAX_BODY_BYTES,
    BodyError,
    BodyTooLarge,
    body_decode,
    body_format_for,
    body_gunzip,
    events_count,
)
from ingest.receiving import batch_receive, ingest_queue
from ingest.schemas import (
    ApiError,
    BatchAccepted,
    BatchReport,
    EventBatch,
    SourceTotals,
    event_json_schema,
)
from ingest.selectors import batch_report, source_totals

logger = logging.getLogger(__name__)

router = Router(tags=["ingest"], auth=FeedTokenAuth())

ERRORS = {
    400: ApiError,
    401: ApiError,
    403: ApiError,
    404: ApiError,
    409: ApiError,
    413: ApiError,
    415: ApiError,
    429: ApiError,
    503: ApiError,
}


def _error(status: int, detail: str, errors: list[str] | None = None, **headers) -> JsonResponse:
    response = JsonResponse({"detail": detail, "errors": errors or []}, status=status)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def _rate_limited(source) -> int | None:
    """Seconds to wait if the source is over its per-minute limit, else None.

    A fixed one-minute window in Redis. If Redis is down the request passes: storing the batch
    matters more than throttling it (the database is the durable queue then).
    """
    now = time.time()
    window = int(now // 60)
    key = f"ingest:rate:{source.pk}:{window}"
    try:
        pipe = ingest_queue().connection.pipeline()
        pipe.incr(key)
        pipe.expire(key, 120)
        count, _ = pipe.execute()
    except RedisError as error:
        logger.warning("rate limit not checked (Redis unreachable): %s", error)
        return None
    if count > source.rate_limit_per_minute:
        return max(1, int(60 - now % 60) + 1)
    return None


@router.post(
    "/events",
    response={202: BatchAccepted, **ERRORS},
    summary="Push a batch of events",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": event_json_schema(EventBatch)},
                "application/x-ndjson": {
                    "schema": {
                        "type": "string",
                        "description": "One event per line; each line is one of the events "
                        "of the application/json body.",
                    }
                },
                "text/csv": {
                    "schema": {
                        "type": "string",
                        "description": "stock.* events only: a header row naming the fields "
                        "(at least event_id,type,occurred_at,site), one row per event; an "
                        "empty cell is an absent field; no `lines`.",
                    }
                },
            },
        },
        "parameters": [
            {
                "name": "Content-Encoding",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "enum": ["gzip", "identity"]},
                "description": "gzip: the body is gzip-compressed; the limits apply to it "
                "decompressed, the signature to the bytes as sent.",
            },
            {
                "name": "X-Signature",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "example": "t=1767225600,sha256=<hex>"},
                "description": "t=<unix seconds>,sha256=<hex HMAC-SHA256 of '<t>.<raw body>' "
                "with the source's signing secret> (docs/signing.md); required when the source "
                "says so. Refused more than 5 minutes from the server's clock, and when the same "
                "signature comes again (409). The body-only 'sha256=<hex HMAC of the raw body>' is "
                "accepted too, unless the source takes timestamped signatures only.",
            },
        ],
    },
)
def events_push(request: HttpRequest):
    """Store the batch durably and answer 202 with its id; a worker applies it.

    At most 10,000 events and 5 MiB per request, measured after decompression when the body is
    sent with `Content-Encoding: gzip`. Every event then ends up applied, a
    duplicate (same `event_id` from this source before), or rejected with a reason: see
    `GET /api/ingest/batches/{batch_id}`.
    """
    source = request.auth
    body_format = body_format_for(request.content_type or "")
    if body_format is None:
        return _error(
            415,
            f"unsupported Content-Type {request.content_type!r}: send one of "
            f"{', '.join(sorted(CONTENT_TYPES))}",
        )
    encoding = (request.headers.get("Content-Encoding") or "identity").strip().lower()
    if encoding not in CONTENT_ENCODINGS:
        return _error(
            415,
            f"unsupported Content-Encoding {encoding!r}: send the body as is, or gzip it "
            "(Content-Encoding: gzip)",
        )
    declared = request.META.get("CONTENT_LENGTH") or "0"
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return _error(413, f"the body is over {MAX_BODY_BYTES} bytes: split it into batches")
    try:
        body = request.body
    except RequestDataTooBig:
        return _error(413, f"the body is over {MAX_BODY_BYTES} bytes: split it into batches")
    if len(body) > MAX_BODY_BYTES:
        return _error(413, f"the body is over {MAX_BODY_BYTES} bytes: split it into batches")
    verdict = signature_check(source=source, body=body, header=request.headers.get("X-Signature"))
    if verdict.problem:
        return _error(401, verdict.problem)
    if verdict.replay_key is None:
        return _batch_store(source=source, body=body, body_format=body_format, encoding=encoding)
    if not signature_claim(verdict.replay_key):
        return _error(
            409,
            "this exact signed request was received already (same X-Signature): a retry must "
            "be signed again with the current time, and its events' event_id keep it idempotent",
        )
    response = _batch_store(source=source, body=body, body_format=body_format, encoding=encoding)
    if response.status_code != 202:
        signature_release(verdict.replay_key)  # nothing kept: the producer may send it again
    return response


def _batch_store(*, source, body: bytes, body_format: str, encoding: str) -> JsonResponse:
    """Rate-limit, count and store a request whose token and signature are good."""
    retry_after = _rate_limited(source)
    if retry_after is not None:
        return _error(
            429,
            f"over {source.rate_limit_per_minute} requests per minute for this source: retry "
            f"after {retry_after} s, or send bigger batches",
            Retry_After=str(retry_after),
        )
    try:
        # After the signature, which covers the bytes as sent: nothing unauthenticated is
        # decompressed. The size limit applies again to what comes out.
        if CONTENT_ENCODINGS[encoding] == "gzip":
            body = body_gunzip(body, limit=MAX_BODY_BYTES)
        text = body_decode(body)
        accepted = events_count(body_format=body_format, text=text)
    except BodyTooLarge as error:
        return _error(413, error.detail)
    except BodyError as error:
        return _error(400, error.detail, error.errors)
    try:
        batch = batch_receive(
            source=source, body_format=body_format, raw_body=text, accepted=accepted
        )
    except DatabaseError as error:
        logger.error("batch from %s not stored: %s", source, error)
        return _error(503, "the batch could not be stored durably; nothing was kept: retry")
    return JsonResponse({"batch_id": str(batch.pk), "accepted": batch.accepted}, status=202)


@router.get("/batches/{batch_id}", response={200: BatchReport, **ERRORS}, summary="Batch status")
def batch_status(request: HttpRequest, batch_id: str):
    """Status, counts and the reason for each rejected event of one of this source's batches.

    `accepted = applied + duplicates + rejected + pending`.
    """
    try:
        batch_uuid = uuid.UUID(batch_id)
    except ValueError:
        return _error(404, f"no batch {batch_id!r}: use the batch_id a 202 answer gave")
    try:
        report = batch_report(batch_id=batch_uuid, source=request.auth)
    except DatabaseError:
        return _error(503, "the database is unreachable: retry shortly")
    if report is None:
        return _error(404, f"no batch {batch_id!r} from this feed source")
    return JsonResponse(report)


@router.get("/source", response={200: SourceTotals, **ERRORS}, summary="This source's totals")
def source_status(request: HttpRequest):
    """Conservation for the calling source over all its batches."""
    try:
        return JsonResponse(source_totals(source=request.auth))
    except DatabaseError:
        return _error(503, "the database is unreachable: retry shortly")
