"""Burn-rate alerts on the service level objectives: fast burn (1 h and 5 min above 14.4x) and
slow burn (6 h and 30 min above 6x) open when both windows burn, name the SLO, and resolve by
themselves once the short window is back under the threshold."""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from core.roles import ON_CALL
from oncall.default_rules import alert_rules_default_create
from oncall.models import Alert, AlertKind, AlertStatus
from oncall.services import alerts_evaluate
from slos.counters import slo_count
from slos.models import Slo
from tests.builders import user_make

pytestmark = pytest.mark.django_db


def active_kinds() -> set[str]:
    return set(
        Alert.objects.filter(status__in=[AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED]).values_list(
            "kind", flat=True
        )
    )


@pytest.fixture
def rules():
    alert_rules_default_create()


def test_a_fast_burn_opens_both_alerts_names_the_slo_and_resolves_when_the_burn_stops(rules):
    # given 100 events applied this minute of which 20 late: 20 % bad against freshness's 1 %
    # budget, a burn rate of 20 over every window
    slo_count(Slo.FRESHNESS, good=80, total=100)

    alerts_evaluate(site_codes=None)

    # then the fast (20 > 14.4) and the slow (20 > 6) burn alerts are open, with the rate
    assert {AlertKind.SLO_FAST_BURN, AlertKind.SLO_SLOW_BURN} <= active_kinds()
    fast = Alert.objects.get(kind=AlertKind.SLO_FAST_BURN)
    assert fast.value == Decimal("20.0000")
    assert fast.severity == "critical"
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user_make(role=ON_CALL, is_staff=True))
    page = re.sub(r"\s+", " ", client.get(f"/oncall/alerts/{fast.pk}/").content.decode())
    assert "Freshness SLO: burn rate 20.0 over 1h, 20.0 over 5m" in page

    # when 2,000 events arrive fresh: the 5 minutes burn 20 / 2,100 / 1 % = 0.95
    slo_count(Slo.FRESHNESS, good=2000, total=2000)
    alerts_evaluate(site_codes=None)

    # then both resolve by themselves
    assert not {AlertKind.SLO_FAST_BURN, AlertKind.SLO_SLOW_BURN} & active_kinds()


def test_a_burn_that_stopped_minutes_ago_opens_only_the_slow_alert(rules):
    # given 40 minutes ago, 100 ingest POSTs of which 1 answered 503 (burn 10 over 1 h and 6 h),
    # and 10 good answers in the last 5 minutes
    slo_count(
        Slo.INGEST_AVAILABILITY, good=99, total=100, at=timezone.now() - timedelta(minutes=20)
    )
    slo_count(Slo.INGEST_AVAILABILITY, good=10, total=10)

    alerts_evaluate(site_codes=None)

    # 1 h, 6 h and 30 min: 1 bad in 110 = 0.91 % / 0.1 % = 9.1, over 6 but under 14.4; and
    # the last 5 minutes burn nothing
    assert active_kinds() & {AlertKind.SLO_FAST_BURN, AlertKind.SLO_SLOW_BURN} == {
        AlertKind.SLO_SLOW_BURN
    }


def test_no_traffic_is_no_burn():
    alert_rules_default_create()
    alerts_evaluate(site_codes=None)
    assert not {AlertKind.SLO_FAST_BURN, AlertKind.SLO_SLOW_BURN} & active_kinds()


def test_a_handful_of_events_is_too_few_to_page_on(rules, settings):
    # given one bad snapshot line out of 8 this minute: a burn rate of 6.25 over every window,
    # over the slow threshold, but only 8 events (the minimum is 50 in the long window)
    slo_count(Slo.CORRECTNESS, good=7, total=8)

    alerts_evaluate(site_codes=None)
    assert not {AlertKind.SLO_FAST_BURN, AlertKind.SLO_SLOW_BURN} & active_kinds()

    # and with the minimum lowered to 8 events, the same burn opens the slow alert
    settings.SLO_BURN_MIN_EVENTS = 8
    alerts_evaluate(site_codes=None)
    assert AlertKind.SLO_SLOW_BURN in active_kinds()
