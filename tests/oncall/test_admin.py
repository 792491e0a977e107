from decimal import Decimal

import pytest

from core.roles import MANAGERS, ON_CALL, STOCK_STAFF
from oncall.models import AlertKind, AlertRule, Runbook
from tests.builders import site_make, user_make

pytestmark = pytest.mark.django_db


def logged_in(client, role):
    client.force_login(user_make(role=role, is_staff=True))


def rule_form(**fields):
    return {
        "name": "Negative stock",
        "kind": AlertKind.NEGATIVE_STOCK,
        "site": "",
        "threshold": "0",
        "hold_seconds": "120",
        "window": "1h",
        "severity": "warning",
        "enabled": "on",
        **fields,
    }


@pytest.mark.parametrize("role", [ON_CALL, MANAGERS])
def test_on_call_and_managers_edit_alert_rules_in_the_admin(client, role):
    site = site_make()
    logged_in(client, role)

    created = client.post("/admin/oncall/alertrule/add/", rule_form(site=site.pk))
    rule = AlertRule.objects.get()
    changed = client.post(
        f"/admin/oncall/alertrule/{rule.pk}/change/", rule_form(threshold="3", site=site.pk)
    )

    assert (created.status_code, changed.status_code) == (302, 302)
    rule.refresh_from_db()
    assert (rule.site, rule.threshold, rule.hold_seconds) == (site, Decimal(3), 120)


def test_a_bad_rule_names_the_field(client):
    logged_in(client, ON_CALL)

    response = client.post("/admin/oncall/alertrule/add/", rule_form(threshold="lots"))

    assert response.status_code == 200
    assert "threshold" in response.context["adminform"].form.errors
    assert not AlertRule.objects.exists()


@pytest.mark.parametrize("role", [STOCK_STAFF, None])
def test_others_cannot_edit_alert_rules_or_runbooks(client, role):
    logged_in(client, role)

    rule = client.post("/admin/oncall/alertrule/add/", rule_form())
    runbook = client.post("/admin/oncall/runbook/add/", {"slug": "x", "title": "x"})

    assert (rule.status_code, runbook.status_code) == (403, 403)
    assert not AlertRule.objects.exists()
    assert not Runbook.objects.exists()


def test_alerts_and_remediations_are_read_only_in_the_admin(client):
    logged_in(client, ON_CALL)

    assert client.get("/admin/oncall/alert/add/").status_code == 403
    assert client.get("/admin/oncall/remediationaction/add/").status_code == 403
    assert client.get("/admin/oncall/alert/").status_code == 200
