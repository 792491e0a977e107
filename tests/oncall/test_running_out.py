"""The alert kind "SKUs that run out within N days": fires on the fewest days of cover in its
scope, names the SKUs, resolves once restocked; its runbook's live list."""

import datetime as dt
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.utils import timezone

from ledger.models import MovementKind
from ledger.services import MovementRequest, movements_record
from oncall.models import Alert, AlertKind, AlertRule, AlertStatus, DiagnosticName, Runbook
from oncall.selectors import alert_concerns, diagnostics_run
from oncall.services import alerts_evaluate
from tests.builders import site_make, sku_make, user_make

pytestmark = pytest.mark.django_db

DAY = dt.timedelta(days=1)


def _moved(site, sku, kind: str, qty: int, at: dt.datetime) -> None:
    movements_record(
        requests=[
            MovementRequest(
                site=site.code, sku=sku.code, kind=kind, on_hand_delta=qty, occurred_at=at
            )
        ]
    )


def _sold(site, sku, *, sold: int, left: int) -> None:
    """`sold` units dispatched yesterday out of `sold + left` received ten days ago."""
    now = timezone.now()
    _moved(site, sku, MovementKind.RECEIVED, sold + left, now - 10 * DAY)
    _moved(site, sku, MovementKind.ORDER_DISPATCHED, -sold, now - DAY)


def _rule(days: str, site=None) -> AlertRule:
    return AlertRule.objects.create(
        name=f"SKUs out within {days} days",
        kind=AlertKind.RUNNING_OUT,
        site=site,
        threshold=Decimal(days),
    )


def test_it_fires_on_a_sku_running_out_and_resolves_once_restocked():
    # TEA: 28 sold in 28 days (1 a day), 2 left: 2 days of cover, under 3.
    ams, tea, oat = site_make("ams"), sku_make("TEA"), sku_make("OAT")
    _sold(ams, tea, sold=28, left=2)
    _sold(ams, oat, sold=28, left=40)  # 40 days: fine
    rule = _rule("3")

    opened = alerts_evaluate(site_codes=["ams"])

    alert = Alert.objects.get()
    assert [change.to_status for change in opened] == ["open"]
    assert (alert.rule, alert.status, alert.value) == (rule, AlertStatus.OPEN, Decimal("2"))
    assert "breaches below 3" in alert.transitions.get().note
    assert [item["label"] for item in alert_concerns(alert)] == [
        "ams / TEA: 2.0 days of cover, available 2"
    ]
    assert alert_concerns(alert)[0]["url"] == "/skus/TEA/?site=ams"

    _moved(ams, tea, MovementKind.RECEIVED, 100, timezone.now())  # 102 days of cover now
    resolved = alerts_evaluate(site_codes=["ams"])

    alert.refresh_from_db()
    assert [change.to_status for change in resolved] == ["resolved"]
    assert alert.status == AlertStatus.RESOLVED
    assert alert.last_value == Decimal("40")  # OAT's 40 days are now the fewest


def test_exactly_n_days_of_cover_is_not_running_out_and_a_hair_less_is():
    ams, tea = site_make("ams"), sku_make("TEA")
    _sold(ams, tea, sold=28, left=3)  # 3.0 days
    _rule("3")
    assert alerts_evaluate(site_codes=["ams"]) == []

    _moved(ams, tea, MovementKind.ORDER_DISPATCHED, -1, timezone.now())
    # 29 sold, 2 left: 2 * 28 / 29 = 1.9310... days, kept to 4 places rounded down
    alerts_evaluate(site_codes=["ams"])
    assert Alert.objects.get().value == Decimal("1.9310")


def test_without_demand_nothing_runs_out_and_nothing_opens():
    ams, tea = site_make("ams"), sku_make("TEA")
    _moved(ams, tea, MovementKind.RECEIVED, 1, timezone.now())
    _moved(ams, tea, MovementKind.ORDER_RETURNED, 4, timezone.now())  # returns only
    _rule("3")

    assert alerts_evaluate(site_codes=["ams"]) == []
    assert AlertRule.objects.get().state.last_value is None  # no data


def test_a_site_rule_watches_only_its_site():
    ams, rot, tea = site_make("ams"), site_make("rot"), sku_make("TEA")
    _sold(ams, tea, sold=28, left=1)
    _sold(rot, tea, sold=28, left=20)
    _rule("7", site=rot)
    everywhere = _rule("7")

    alerts_evaluate(site_codes=["ams", "rot"])

    assert [(alert.rule, alert.value) for alert in Alert.objects.all()] == [
        (everywhere, Decimal("1"))
    ]


def test_the_shipped_runbook_covers_the_kind_and_lists_what_to_reorder(client):
    ams, tea = site_make("ams"), sku_make("TEA", reorder_point=5)
    _sold(ams, tea, sold=28, left=2)
    call_command("load_runbooks", stdout=open("/dev/null", "w"))  # noqa: SIM115

    runbook = Runbook.objects.get(slug="running-out")
    assert runbook.alert_kinds == ["running_out"]
    (diagnostic,) = diagnostics_run([DiagnosticName.RUNNING_OUT])
    assert diagnostic.summary == "1 SKU-site(s) to reorder"
    # ceil(1 * 14) + 5 - 2 = 17
    assert [(line.site, line.sku, line.suggested_qty) for line in diagnostic.rows] == [
        ("ams", "TEA", 17)
    ]
    client.force_login(user_make(role="on-call", is_staff=True))
    page = client.get(f"/oncall/runbooks/{runbook.slug}/").content.decode()
    assert 'data-running-out="ams/TEA"' in page
    assert 'href="/sites/ams/restock.csv"' in page
