"""Turn a request body into a list of raw events, or say exactly what is wrong with it.

`events_parse` is the reference: the worker parses the stored body with it. The API only needs
to refuse a broken request (400) and to count the events; `events_count` does that with a
faster JSON parser and lets `events_parse` decide whatever that parser refuses, so what was
counted is what gets processed.
"""

import csv
import io
import json
import math
import zlib

import orjson

from ingest.schemas import EVENTS_PER_REQUEST

MAX_BODY_BYTES = 5 * 1024 * 1024
CONTENT_TYPES = {
    "application/json": "json",
    "application/x-ndjson": "ndjson",
    "application/ndjson": "ndjson",
    "text/csv": "csv",
}
REQUIRED_CSV_COLUMNS = ("event_id", "type", "occurred_at", "site")
# Content-Encoding values a body may come in (None: sent as is).
CONTENT_ENCODINGS = {"identity": None, "gzip": "gzip", "x-gzip": "gzip"}


class BodyError(ValueError):
    """The request body cannot be taken: `detail` says what to fix."""

    def __init__(self, detail: str, errors: list[str] | None = None):
        self.detail = detail
        self.errors = errors or []
        super().__init__(detail)


class BodyTooLarge(BodyError):
    """The body is over MAX_BODY_BYTES once decompressed (413, not 400)."""


def body_gunzip(body: bytes, *, limit: int = MAX_BODY_BYTES) -> bytes:
    """Decompress a gzip body (one member or several), refusing it as soon as the output passes
    `limit` bytes: a small body that would expand to gigabytes (a decompression bomb) costs at
    most `limit` bytes of memory and the time to produce them."""
    output = bytearray()
    data = body
    while data:
        decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            output += decompressor.decompress(data, limit + 1 - len(output))
        except zlib.error as error:
            raise BodyError(
                f"the body is not valid gzip ({error}): compress it with gzip, or send it "
                "without Content-Encoding"
            ) from None
        if len(output) > limit or decompressor.unconsumed_tail:
            raise BodyTooLarge(
                f"the body is over {limit} bytes once decompressed: split it into batches"
            )
        if not decompressor.eof:
            raise BodyError("the gzip body is cut short: send the whole compressed body")
        data = decompressor.unused_data
    return bytes(output)


def body_format_for(content_type: str) -> str | None:
    """The format named by a Content-Type header (parameters such as charset ignored)."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    return CONTENT_TYPES.get(media_type)


def body_decode(body: bytes) -> str:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise BodyError(
            f"the body is not valid UTF-8 (byte {error.start}): send UTF-8 text"
        ) from None
    if "\x00" in text:
        raise BodyError("the body contains a NUL character: remove it")
    return text.removeprefix("\ufeff")


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


def _json_loads(text: str):
    return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)


def events_parse(*, body_format: str, text: str) -> list[object]:
    """Return the raw events of a body, or raise BodyError."""
    if body_format == "json":
        events = _json_events(text)
    elif body_format == "ndjson":
        events = _ndjson_events(text)
    elif body_format == "csv":
        events = _csv_events(text)
    else:
        raise BodyError(f"unknown body format {body_format!r}")
    _count_check(len(events))
    return events


def events_count(*, body_format: str, text: str) -> int:
    """The number of events `events_parse` finds in the body, or the BodyError it raises.

    orjson builds the events in a fraction of the time. Everything it accepts, the reference
    parser accepts too, with the same events: it refuses NaN, Infinity and out-of-range floats
    as we do, lone surrogate escapes (we accept them; the worker rejects the event), and nesting
    deeper than 1,024 (the standard library's scanner goes to 1,497). So when it refuses a body,
    `events_parse` decides, and words the 400.
    """
    try:
        if body_format == "json":
            document = orjson.loads(text)
            if not isinstance(document, dict) or not isinstance(document.get("events"), list):
                raise BodyError("not a batch")
            count = len(document["events"])
        elif body_format == "ndjson":
            count = 0
            for line in text.splitlines():
                if line.strip():
                    orjson.loads(line)
                    count += 1
        else:
            return len(events_parse(body_format=body_format, text=text))
        _count_check(count)
    except (orjson.JSONDecodeError, BodyError):
        return len(events_parse(body_format=body_format, text=text))
    return count


def _count_check(count: int) -> None:
    if not count:
        raise BodyError("the batch has no events: send at least one")
    if count > EVENTS_PER_REQUEST:
        raise BodyError(
            f"the batch has {count} events; send at most {EVENTS_PER_REQUEST} per request"
        )


def _json_events(text: str) -> list[object]:
    try:
        document = _json_loads(text)
    except RecursionError:
        raise BodyError("the JSON is nested too deeply") from None
    except ValueError as error:
        raise BodyError(f"the body is not valid JSON: {error}") from None
    if not isinstance(document, dict) or not isinstance(document.get("events"), list):
        raise BodyError('send a JSON object {"events": [ ... ]} with a list of events')
    return document["events"]


def _ndjson_events(text: str) -> list[object]:
    events, errors = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            events.append(_json_loads(line))
        except RecursionError:
            errors.append(f"line {number}: the JSON is nested too deeply")
        except ValueError as error:
            errors.append(f"line {number}: not valid JSON: {error}")
        if len(errors) >= 20:
            break
    if errors:
        raise BodyError("some lines are not valid JSON: fix them and resend", errors)
    return events


def _csv_events(text: str) -> list[object]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
        if header is None:
            raise BodyError("the CSV is empty: send a header row and one row per event")
        header = [name.strip() for name in header]
        missing = [name for name in REQUIRED_CSV_COLUMNS if name not in header]
        if missing:
            raise BodyError(
                f"the CSV header lacks {', '.join(missing)}: the first row names the fields, "
                f"at least {','.join(REQUIRED_CSV_COLUMNS)}"
            )
        if "lines" in header:
            raise BodyError("CSV cannot carry `lines`: send stock.snapshot as JSON or NDJSON")
        if len(set(header)) != len(header):
            raise BodyError("the CSV header names a column twice")
        events = []
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise BodyError(
                    f"CSV line {reader.line_num} has {len(row)} cells; the header has {len(header)}"
                )
            # An empty cell means the field is absent (one file mixes event types).
            events.append({name: cell for name, cell in zip(header, row, strict=True) if cell})
    except csv.Error as error:
        raise BodyError(f"the CSV is malformed at line {reader.line_num}: {error}") from None
    return events
