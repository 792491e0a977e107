"""Property tests at every edge where people and producers hand us times and integers.

Whatever is drawn (times far in the past or future, at the accepted range's edges, in any UTC
offset; integers around every column bound; text that is no number), the product answers
without a 500, and stock changes only by what was valid, as an independent model says.
Each example runs in a savepoint that is rolled back: every example starts from the same stock.
"""

import itertools
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from django.conf import settings as django_settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.test import Client
from django.utils import timezone as django_timezone
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from core.limits import MAX_QTY
from core.roles import STOCK_STAFF
from corrections.models import CountSheet
from ingest.models import FeedSource, IngestBatch
from ingest.processing import batch_process
from ledger.models import StockLevel
from ledger.services import movements_record
from tests.builders import receive, site_make, sku_make, user_make
from tests.ingest.helpers import source_make

pytestmark = pytest.mark.django_db

START_ON_HAND = 10


def property_settings(examples: int):
    # Each example is a few requests through the whole stack: a few dozen cover the edges
    # (the explicit examples pin the ones issue 12 found).
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


_event_ids = itertools.count(1)

BOUNDS = [0, 1, -1, MAX_QTY, MAX_QTY + 1, -MAX_QTY, -MAX_QTY - 1, 2**31 - 1, 2**31]
BOUNDS += [2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 10**20, 10**12, 10**12 + 1, 10000, 10001]
integers = st.one_of(st.sampled_from(BOUNDS), st.integers(), st.integers(-20, 20))
# Text a person or a producer might type where a number belongs.
junk = st.sampled_from(["", " ", "abc", "1e3", "²", "0x10", "9" * 5000, "-", "١٢"])


@pytest.fixture
def stocked():
    site, sku = site_make("north"), sku_make("A")
    movements_record(requests=[receive(site, sku, START_ON_HAND)])
    return site, sku


@pytest.fixture
def staff():
    # Made once per test, not per example: hashing a password costs a tenth of a second.
    return user_make(role=STOCK_STAFF, is_staff=True)


@pytest.fixture
def feed_token() -> str:
    source, token = source_make()
    FeedSource.objects.filter(pk=source.pk).update(rate_limit_per_minute=1_000_000)
    return token


def on_hand() -> int:
    return StockLevel.objects.get(site__code="north", sku__code="A").on_hand


# --- Event times ---------------------------------------------------------------------------

offsets = st.integers(-14 * 60, 14 * 60).map(lambda minutes: timezone(timedelta(minutes=minutes)))
MARGIN = timedelta(minutes=2)  # no time drawn this close to the moving upper edge


@st.composite
def event_times(draw) -> tuple[object, bool | None]:
    """(occurred_at as sent, whether it lies in the accepted range; None: not a time at all)."""
    floor = django_settings.EVENT_TIME_FLOOR
    tolerance = timedelta(seconds=django_settings.EVENT_TIME_FUTURE_TOLERANCE_SECONDS)
    latest = django_timezone.now() + tolerance
    kind = draw(st.sampled_from(["any", "near floor", "near latest", "far", "not a time"]))
    if kind == "not a time":
        return draw(st.one_of(junk, st.just("2026-13-01T00:00:00Z"))), None
    if kind == "far":
        text = draw(st.sampled_from(["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"]))
        return text, False
    if kind == "near floor":
        moment = floor + timedelta(microseconds=draw(st.integers(-3, 3)))
    elif kind == "near latest":
        moment = latest + draw(st.sampled_from([-1, 1])) * (MARGIN + timedelta(seconds=1))
    else:
        naive = draw(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)))
        moment = naive.replace(tzinfo=UTC)
        if abs(moment - latest) < MARGIN:
            moment -= 2 * MARGIN
    moment = moment.astimezone(draw(offsets))
    return moment.isoformat(), floor <= moment <= latest


@st.composite
def stock_events(draw) -> tuple[dict, bool]:
    """A stock event at north/A with a drawn time and quantity, and whether it is valid."""
    occurred_at, time_ok = draw(event_times())
    kind = draw(st.sampled_from(["stock.received", "stock.adjusted", "stock.counted"]))
    number = draw(st.one_of(integers, st.just(True)))
    event = {
        "event_id": f"edge-{next(_event_ids)}",
        "type": kind,
        "occurred_at": occurred_at,
        "site": "north",
        "sku": "A",
    }
    is_int = isinstance(number, int) and not isinstance(number, bool)
    if kind == "stock.received":
        event["qty"] = number
        number_ok = is_int and 0 < number <= MAX_QTY
    elif kind == "stock.adjusted":
        event["qty_delta"], event["reason"] = number, "edge"
        number_ok = is_int and number != 0 and abs(number) <= MAX_QTY
    else:
        event["counted_qty"] = number
        number_ok = is_int and 0 <= number <= MAX_QTY
    return event, bool(time_ok) and number_ok


def model_apply(level: int, event: dict) -> int:
    if event["type"] == "stock.received":
        return level + event["qty"]
    if event["type"] == "stock.adjusted":
        return level + event["qty_delta"]
    return event["counted_qty"]


@property_settings(60)
@example(
    batch=[
        (
            {
                "event_id": "far-1",
                "type": "stock.received",
                "occurred_at": "9999-12-31T23:59:59-14:00",
                "site": "north",
                "sku": "A",
                "qty": 1,
            },
            False,
        ),
    ]
).via("issue 12: a year-10000 time")
@given(batch=st.lists(stock_events(), min_size=1, max_size=5))
def test_the_feed_api_applies_exactly_the_valid_events(stocked, feed_token, batch):
    token = feed_token
    client = Client()
    with transaction.atomic():
        # given the stock at north/A
        expected = START_ON_HAND
        for event, valid in batch:
            if valid:
                expected = model_apply(expected, event)
        # when a producer posts the drawn events and a worker applies them
        response = client.post(
            "/api/ingest/events",
            data=json.dumps({"events": [event for event, _ in batch]}),
            content_type="application/json",
            headers={"Authorization": f"Bearer {token}"},
        )
        # then the body is accepted, exactly the valid events are applied, and the rest rejected
        assert response.status_code == 202, response.content
        batch_process(batch_id=response.json()["batch_id"])
        row = IngestBatch.objects.get(pk=response.json()["batch_id"])
        assert row.applied == sum(valid for _, valid in batch)
        assert row.applied + row.rejected == len(batch)
        assert on_hand() == expected
        # and every page reading them still answers
        assert (
            client.get("/api/stock", headers={"Authorization": f"Bearer {token}"}).status_code
            == 200
        )
        assert (
            client.get("/api/kpis", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        )
        transaction.set_rollback(True)


# --- Forms and count sheets ----------------------------------------------------------------

numbers_typed = st.one_of(integers.map(str), junk)


def typed_int(text: str) -> int | None:
    """What a person meant by `text`, if it is a plain whole number (in any script's decimal
    digits, as Python and Django read them: "١٢" is 12; "²" is no number)."""
    stripped = text.strip()
    digits = stripped.removeprefix("-")
    if digits.isdecimal() and len(digits) < 4000:
        return int(stripped)
    return None


@property_settings(50)
@example(field="delta", typed="9223372036854775807", button="_preview")
@example(field="counted_qty", typed="99999999999999999999", button="_apply")
@given(
    field=st.sampled_from(["delta", "counted_qty"]),
    typed=numbers_typed,
    button=st.sampled_from(["_preview", "_apply"]),
)
def test_the_correction_form_changes_stock_only_by_a_valid_correction(
    stocked, staff, settings, field, typed, button
):
    settings.CORRECTION_APPROVAL_THRESHOLD = "1000000000000000"  # every valid one applies
    client = Client()
    with transaction.atomic():
        client.force_login(staff)
        # when stock staff preview or apply the drawn number
        form = {"site": "north", "sku": "A", "reason": "recount", field: typed, button: "1"}
        response = client.post("/admin/corrections/correction/add/", form)
        # then the form answers (a page or a redirect) and stock moves only when it was valid
        assert response.status_code in (200, 302)
        number = typed_int(typed)
        if field == "delta":
            valid = number is not None and number != 0 and abs(number) <= MAX_QTY
            after = START_ON_HAND + number if valid else START_ON_HAND
        else:
            valid = number is not None and 0 <= number <= MAX_QTY
            after = number if valid else START_ON_HAND
        applied = valid and button == "_apply"
        assert response.status_code == (302 if applied else 200)
        assert on_hand() == (after if applied else START_ON_HAND)
        transaction.set_rollback(True)


@property_settings(40)
@example(typed="99999999999999999999")
@given(typed=numbers_typed)
def test_a_count_sheet_changes_stock_only_by_a_valid_count(stocked, staff, settings, typed):
    # every valid sheet applies (above the threshold it would wait: tests/corrections)
    settings.CORRECTION_APPROVAL_THRESHOLD = "1000000000000000"
    client = Client()
    with transaction.atomic():
        client.force_login(staff)
        # when a sheet with the drawn count is uploaded, and applied if it was taken
        sheet = f"site,sku,counted_qty\nnorth,A,{typed}\n".encode()
        upload = client.post(
            "/admin/corrections/countsheet/add/",
            {"sheet": SimpleUploadedFile("count.csv", sheet, content_type="text/csv")},
        )
        number = typed_int(typed)
        valid = number is not None and 0 <= number <= MAX_QTY
        # then a valid sheet is taken and sets on_hand; any other is refused with its line
        assert upload.status_code == (302 if valid else 200)
        if valid:
            created = CountSheet.objects.get()
            applied = client.post(f"/admin/corrections/countsheet/{created.pk}/apply/")
            assert applied.status_code == 302
        else:
            assert not CountSheet.objects.exists()
        assert on_hand() == (number if valid else START_ON_HAND)
        transaction.set_rollback(True)


# --- Query parameters ----------------------------------------------------------------------

query_values = st.one_of(integers.map(str), junk, st.text(max_size=8))


@property_settings(25)
@example(limit="10", offset="99999999999999999999", other="9999")
@given(limit=query_values, offset=query_values, other=query_values)
def test_query_parameters_never_give_a_500(stocked, admin_user, limit, offset, other):
    client = Client()
    client.force_login(admin_user)
    # when the API is asked for a page of stock with drawn bounds
    response = client.get("/api/stock", {"limit": limit, "offset": offset})
    # then it answers the page when both are in range, else a 400 saying which is wrong
    limit_n, offset_n = typed_int(limit), typed_int(offset)
    in_range = (limit == "" or (limit_n is not None and 0 <= limit_n <= 10_000)) and (
        offset == "" or (offset_n is not None and 0 <= offset_n <= 10**12)
    )
    assert response.status_code == (200 if in_range else 400), (limit, offset, response.content)
    if not in_range:
        assert "must be" in response.json()["detail"]
    # and pages given the drawn value where they take a number or a date answer, never a 500
    for path, params in [
        ("/", {"window": other}),
        ("/", {"kiosk": "1", "rotate": other}),
        ("/skus/A/", {"site": "north", "page": other}),
        ("/oncall/", {"silent_minutes": other}),
        ("/admin/inventory_ops/movement/", {"occurred_at__year": other}),
        (
            "/admin/corrections/correction/",
            {"requested_at__year": "2026", "requested_at__month": other},
        ),
        ("/api/kpis", {"window": other}),
    ]:
        assert client.get(path, params).status_code in (200, 302, 400, 404), (path, params)
