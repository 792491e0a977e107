"""Random deliveries give the same breakdowns as a plain reference computation over them
(numpy's percentiles), kept incrementally in random batches and after `rebuild_kpis`."""

import datetime as dt
import io
from decimal import Decimal

import numpy
import pytest
from django.core.management import call_command
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kpis.reads import kpis_compute
from kpis.rollups import DeliveryFact, rollups_facts_record
from kpis.windows import WINDOWS
from tests.builders import site_make
from tests.dashboards.kpi_helpers import now_mid_minute

SITES = ("north", "south")
SPAN_S = 32 * 86400

near_a_window_start = st.sampled_from(sorted(WINDOWS.values())).flatmap(
    lambda window_s: st.integers(min_value=145 - window_s, max_value=215 - window_s)
)
deliveries = st.tuples(
    st.sampled_from(SITES),
    st.one_of(st.integers(min_value=-SPAN_S, max_value=120), near_a_window_start),  # delivered
    st.integers(min_value=0, max_value=999_999),  # microseconds
    st.one_of(st.none(), st.integers(min_value=-60, max_value=5 * 86400)),  # duration s, None
    st.booleans(),  # accurate
    st.integers(min_value=0, max_value=2000),  # shipping cost, cents
    st.sampled_from(["web", "store", "", "marketplace"]),
    st.sampled_from(["c-1", "c-2", "c-3", "bike-10"]),
)


def reference(records, sites: set[str], window_s: int, now: dt.datetime, by: str) -> list:
    """The breakdown computed plainly from the deliveries: filter, group, numpy percentiles."""
    start = now - dt.timedelta(seconds=window_s)
    groups: dict[str, list] = {}
    for record in records:
        if record["site"] in sites and start < record["at"] <= now:
            groups.setdefault(record[by], []).append(record)
    entries = []
    for key, group in groups.items():
        durations = [r["duration_us"] / 1e6 for r in group if r["duration_us"] is not None]
        entries.append(
            {
                "key": key,
                "deliveries": len(group),
                "order_accuracy": sum(r["accurate"] for r in group) / len(group),
                "cost_per_shipment": float(sum(r["cost"] for r in group) / len(group)),
                "fulfillment_p50_s": float(numpy.percentile(durations, 50)) if durations else None,
                "fulfillment_p90_s": float(numpy.percentile(durations, 90)) if durations else None,
            }
        )
    entries.sort(key=lambda entry: (-entry["deliveries"], entry["key"]))
    return entries


def same(actual: list, expected: list) -> bool:
    if [(e["key"], e["deliveries"]) for e in actual] != [
        (e["key"], e["deliveries"]) for e in expected
    ]:
        return False
    for got, want in zip(actual, expected, strict=True):
        for field in ("order_accuracy", "cost_per_shipment", "fulfillment_p50_s"):
            if (got[field] is None) != (want[field] is None):
                return False
            if got[field] is not None and abs(got[field] - want[field]) > 1e-6:
                return False
        if want["fulfillment_p90_s"] is not None and (
            abs(got["fulfillment_p90_s"] - want["fulfillment_p90_s"]) > 1e-6
        ):
            return False
    return True


@pytest.mark.slow
@pytest.mark.django_db
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    stream=st.lists(deliveries, min_size=0, max_size=30),
    batch_ends=st.sets(st.integers(min_value=1, max_value=29), max_size=5),
    now_offset_us=st.one_of(st.just(0), st.integers(min_value=0, max_value=59_999_999)),
)
def test_incremental_rebuilt_and_reference_breakdowns_agree(stream, batch_ends, now_offset_us):
    with transaction.atomic():
        base = now_mid_minute()
        sites = {code: site_make(code) for code in SITES}
        records, batch = [], []
        for index, (
            site,
            offset_s,
            micro,
            duration_s,
            accurate,
            cents,
            channel,
            courier,
        ) in enumerate(stream):
            at = base + dt.timedelta(seconds=offset_s, microseconds=micro)
            created = None if duration_s is None else at - dt.timedelta(seconds=duration_s)
            cost = Decimal(cents) / 100
            batch.append(
                DeliveryFact(
                    site_id=sites[site].id,
                    occurred_at=at,
                    accurate=accurate,
                    shipping_cost=cost,
                    order_created_at=created,
                    channel=channel,
                    courier_id=courier,
                )
            )
            records.append(
                {
                    "site": site,
                    "at": at,
                    "accurate": accurate,
                    "cost": cost,
                    "duration_us": None
                    if created is None
                    else (at - created) // dt.timedelta(microseconds=1),
                    "channel": channel,
                    "courier": courier,
                }
            )
            if index + 1 in batch_ends:  # a writer's call: late facts land in the past
                rollups_facts_record(deliveries=batch)
                batch = []
        rollups_facts_record(deliveries=batch)
        now = (base + dt.timedelta(minutes=3)).replace(second=0, microsecond=0) + dt.timedelta(
            microseconds=now_offset_us
        )
        scopes = {None: set(SITES), **{code: {code} for code in SITES}}
        answers = {}
        for scope, scope_sites in scopes.items():
            for window, window_s in WINDOWS.items():
                for by, field in (("channel", "channel"), ("courier", "courier")):
                    got = kpis_compute(site=scope, window=window, now=now, by=by)["breakdown"]
                    expected = reference(records, scope_sites, window_s, now, field)
                    assert same(got, expected), (scope, window, by, got, expected)
                    answers[(scope, window, by)] = got

        call_command("rebuild_kpis", stdout=io.StringIO())
        for (scope, window, by), got in answers.items():
            assert kpis_compute(site=scope, window=window, now=now, by=by)["breakdown"] == got
        transaction.set_rollback(True)
