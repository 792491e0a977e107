"""Severity on alert rules: carried by the alerts they open, most severe shown first."""

from decimal import Decimal

import pytest

from core.roles import ON_CALL
from ledger.services import movements_record
from oncall.default_rules import DEFAULT_ALERT_RULES
from oncall.models import Alert, AlertKind, AlertRule, Severity
from oncall.selectors import open_alerts
from oncall.services import alerts_evaluate
from tests.builders import site_make, sku_make, user_make
from tests.oncall.test_alerts import dispatch

pytestmark = pytest.mark.django_db


def negative_stock_rule(site, severity):
    return AlertRule.objects.create(
        name=f"Negative stock at {site.code}",
        kind=AlertKind.NEGATIVE_STOCK,
        site=site,
        threshold=Decimal("0"),
        severity=severity,
    )


def test_a_rule_without_a_severity_is_a_warning():
    rule = AlertRule.objects.create(
        name="Backlog", kind=AlertKind.QUEUE_BACKLOG, threshold=Decimal("10")
    )

    assert rule.severity == Severity.WARNING


def test_an_alert_keeps_the_severity_its_rule_had_when_it_opened():
    site = site_make("ams")
    rule = negative_stock_rule(site, Severity.CRITICAL)
    movements_record(requests=[dispatch(site, sku_make("TEA"), 2)])
    alerts_evaluate(site_codes=None)

    rule.severity = Severity.INFO
    rule.save()

    assert Alert.objects.get().severity == Severity.CRITICAL


def test_the_console_lists_critical_alerts_first_with_a_word_not_only_a_colour(client, redis_clean):
    # given a critical alert opened before an info one (newest first would put info on top)
    critical_site, info_site = site_make("ams"), site_make("rtm")
    negative_stock_rule(critical_site, Severity.CRITICAL)
    negative_stock_rule(info_site, Severity.INFO)
    movements_record(requests=[dispatch(critical_site, sku_make("TEA"), 2)])
    alerts_evaluate(site_codes=None)
    movements_record(requests=[dispatch(info_site, sku_make("MILK"), 2)])
    alerts_evaluate(site_codes=None)
    client.force_login(user_make(role=ON_CALL, is_staff=True))

    # when on-call opens the console
    page = client.get("/oncall/").content.decode()

    # then the critical one comes first, and each says its severity in words
    assert [alert["severity"] for alert in open_alerts()] == ["critical", "info"]
    assert page.index('data-severity="critical"') < page.index('data-severity="info"')
    assert "▲</span> Critical" in page
    assert "●</span> Info" in page


def test_the_alert_page_shows_its_severity(client):
    site = site_make("ams")
    negative_stock_rule(site, Severity.CRITICAL)
    movements_record(requests=[dispatch(site, sku_make("TEA"), 2)])
    alerts_evaluate(site_codes=None)
    client.force_login(user_make(role=ON_CALL, is_staff=True))

    page = client.get(f"/oncall/alerts/{Alert.objects.get().pk}/").content.decode()

    assert 'data-severity="critical"' in page


def test_the_default_rules_page_for_negative_stock_and_a_silent_feed():
    severities = {kind: severity for _, kind, *_, severity in DEFAULT_ALERT_RULES}

    assert severities[AlertKind.NEGATIVE_STOCK] == Severity.CRITICAL
    assert severities[AlertKind.FEED_SILENT] == Severity.CRITICAL
    assert severities[AlertKind.DEAD_LETTERS] == Severity.WARNING
