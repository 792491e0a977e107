"""Who may open an alert's page and a runbook's past versions (403 for everyone else)."""

import pytest
from django.utils import timezone

from core.roles import MANAGERS, ON_CALL, STOCK_STAFF
from oncall.models import Alert, AlertStatus, Runbook
from oncall.services import alerts_evaluate, runbook_save
from tests.builders import site_make, sku_make, user_make
from tests.oncall.test_alerts import dispatch, negative_stock_rule

pytestmark = pytest.mark.django_db


def logged_in(client, role):
    client.force_login(user_make(role=role))


@pytest.fixture
def open_alert(redis_clean) -> Alert:
    from ledger.services import movements_record

    site = site_make()
    negative_stock_rule(site)
    movements_record(requests=[dispatch(site, sku_make(), 1)])
    alerts_evaluate(site_codes=None)
    return Alert.objects.get(status=AlertStatus.OPEN)


@pytest.mark.parametrize(
    ("role", "status"), [(ON_CALL, 200), (MANAGERS, 200), (STOCK_STAFF, 403), (None, 403)]
)
def test_an_alert_page_is_for_on_call_and_managers(client, open_alert, role, status):
    logged_in(client, role)

    response = client.get(f"/oncall/alerts/{open_alert.pk}/")

    assert response.status_code == status
    if status == 200:
        assert open_alert.rule.name in response.text


@pytest.mark.parametrize(
    ("role", "status"), [(ON_CALL, 200), (MANAGERS, 200), (STOCK_STAFF, 200), (None, 403)]
)
def test_a_runbook_version_is_for_the_roles_that_read_runbooks(client, role, status):
    runbook = Runbook(
        slug="feed-lag",
        title="Feed lag",
        owner="ops",
        last_reviewed=timezone.now().date(),
        alert_kinds=["feed_lag"],
        body="Old steps",
    )
    runbook_save(runbook=runbook, edited_by=None)
    logged_in(client, role)

    response = client.get("/oncall/runbooks/feed-lag/versions/1/")

    assert response.status_code == status
    if status == 200:
        assert "Old steps" in response.text
