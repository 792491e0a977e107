"""Fuzzing the ingest API with hypothesis: never a 500, and only valid events move stock."""

import datetime as dt
import json
import uuid

import pytest
from django.conf import settings as django_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from ingest.models import IngestBatch
from ingest.parsing import events_parse
from ingest.processing import batch_process
from ingest.schemas import event_validate
from ledger.models import Movement
from tests.builders import site_make, sku_make
from tests.ingest.helpers import source_make

pytestmark = pytest.mark.django_db

ALLOWED_STATUSES = {202, 400, 413, 415}
CONTENT_TYPES = ["application/json", "application/x-ndjson", "text/csv", "text/plain", ""]

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def events(draw):
    """A valid stock.received event, or one with a field replaced by random JSON."""
    event = {
        "event_id": uuid.uuid4().hex,
        "type": "stock.received",
        "occurred_at": "2026-11-23T10:00:00+00:00",
        "site": "north",
        "sku": draw(st.sampled_from(["A", "B", "ZZZ"])),
        "qty": draw(st.integers(min_value=-5, max_value=2**70)),
    }
    if draw(st.booleans()):
        field = draw(st.sampled_from([*event, "lines", "to_site"]))
        event[field] = draw(json_values)
    return event


def deep(depth: int) -> str:
    return '{"events": ' + "[" * depth + "]" * depth + "}"


bodies = st.one_of(
    st.lists(events(), min_size=1, max_size=8).map(lambda evs: json.dumps({"events": evs})),
    st.lists(events(), min_size=1, max_size=8).map(
        lambda evs: "\n".join(json.dumps(event) for event in evs)
    ),
    json_values.map(json.dumps),
    st.binary(max_size=200),
    st.text(max_size=200),
    st.integers(min_value=1, max_value=200_000).map(deep),
    st.lists(
        st.lists(
            st.sampled_from(["=1+1", "+cmd|' /C calc'!A0", "@SUM(A1)", "-2", "north", "A", '"', ""])
            | st.text(max_size=6),
            min_size=1,
            max_size=7,
        ),
        max_size=5,
    ).map(
        lambda rows: (
            "event_id,type,occurred_at,site,sku,qty\n" + "\n".join(",".join(row) for row in rows)
        )
    ),
)


@pytest.fixture
def feed(client):
    site_make("north")
    sku_make("A")
    sku_make("B")
    source, token = source_make()
    source.rate_limit_per_minute = 1_000_000
    source.save()
    return token


def unstorable(value) -> bool:
    if isinstance(value, str):
        return "\x00" in value or value != value.encode("utf-8", "ignore").decode("utf-8")
    if isinstance(value, dict):
        return any(unstorable(key) or unstorable(child) for key, child in value.items())
    if isinstance(value, list):
        return any(unstorable(child) for child in value)
    return False


def valid_event_id(raw: dict) -> str | None:
    """The event id as stored (stripped of surrounding whitespace), if the event is valid."""
    try:
        event = event_validate(raw)
    except ValidationError:
        return None
    # PostgreSQL cannot store NUL or lone surrogates: documented as a rejection.
    if unstorable(event.model_dump()):
        return None
    # Times before the floor or too far ahead are refused (time_out_of_range), e.g. `0`, 1970.
    latest = dt.datetime.now(dt.UTC) + dt.timedelta(
        seconds=django_settings.EVENT_TIME_FUTURE_TOLERANCE_SECONDS
    )
    if not django_settings.EVENT_TIME_FLOOR <= event.occurred_at <= latest:
        return None
    if event.site == "north" and getattr(event, "sku", None) in {"A", "B"}:
        return event.event_id
    return None


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=bodies, content_type=st.sampled_from(CONTENT_TYPES))
def test_fuzzed_requests_never_500_and_only_valid_events_move_stock(
    client, feed, body, content_type
):
    data = body if isinstance(body, bytes) else body.encode("utf-8", "surrogatepass")
    response = client.post(
        "/api/ingest/events",
        data=data,
        content_type=content_type,
        headers={"Authorization": f"Bearer {feed}"},
    )
    assert response.status_code in ALLOWED_STATUSES
    assert response["Content-Type"].startswith("application/json")
    answer = response.json()
    if response.status_code != 202:
        assert answer["detail"]
        return
    last_movement = Movement.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    batch_process(batch_id=answer["batch_id"])
    batch = IngestBatch.objects.get(pk=answer["batch_id"])
    assert batch.status == "done"
    assert batch.applied + batch.duplicates + batch.rejected + batch.held == batch.accepted
    # only valid events moved stock; a valid one that did not was a duplicate
    raw_events = events_parse(body_format=batch.body_format, text=batch.raw_body)
    valid = {valid_event_id(raw) for raw in raw_events if isinstance(raw, dict)} - {None}
    moved = {
        ref.split(":", 1)[1]
        for ref in Movement.objects.filter(pk__gt=last_movement).values_list("cause_ref", flat=True)
    }
    assert moved <= valid
    assert len(valid - moved) <= batch.duplicates
