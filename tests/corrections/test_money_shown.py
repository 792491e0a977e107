"""Money in the admin reads as money: the deployment currency and two decimals, on the pages a
manager opens (a correction's page, its list, an alert on a money measure, a SKU's list and
edit form). Headless Chromium
against Daphne."""

from decimal import Decimal

import pytest
from django.utils import timezone

from core.roles import MANAGERS, STOCK_STAFF
from corrections.models import Correction
from corrections.services import CorrectionDraft, corrections_request
from ledger.services import movements_record
from oncall.models import Alert, AlertKind, AlertStatus, Severity
from tests.browser.conftest import chromium, in_thread, log_in  # noqa: F401 (fixtures)
from tests.builders import receive, site_make, sku_make, user_make
from tests.processes import daphne_server

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

PASSWORD = "pw-for-tests"


def a_correction_worth_2050() -> int:
    site, sku = site_make("ams"), sku_make("TEA", unit_cost="2.05")
    movements_record(requests=[receive(site, sku, 5000)])
    user_make("boss", role=MANAGERS, is_staff=True, is_superuser=True)
    clerk = user_make("clerk", role=STOCK_STAFF, is_staff=True)
    Alert.objects.create(
        title="Mismatch value above 900",
        kind=AlertKind.MISMATCH_VALUE,
        threshold=Decimal("900"),
        value=Decimal("901.1638"),
        status=AlertStatus.OPEN,
        opened_at=timezone.now(),
        severity=Severity.WARNING,
    )
    [correction] = corrections_request(
        drafts=[CorrectionDraft(site="ams", sku="TEA", reason="lost", delta=-1000)],
        requested_by=clerk,
    )
    return correction.pk


def test_a_manager_reads_money_with_its_currency_and_two_decimals(chromium):  # noqa: F811
    pk = in_thread(a_correction_worth_2050)
    assert in_thread(lambda: str(Correction.objects.get(pk=pk).value)) == "2050.0000"
    page = chromium.new_context(viewport={"width": 1366, "height": 768}).new_page()
    with daphne_server() as daphne:
        log_in(page, daphne.base_url, username="boss", password=PASSWORD)
        page.goto(f"{daphne.base_url}/admin/corrections/correction/{pk}/change/")
        value_row = page.locator(".form-row.field-value").inner_text()
        change_page = page.content()
        page.goto(f"{daphne.base_url}/admin/corrections/correction/")
        listed = page.locator("td.field-value_shown").first.inner_text()
        page.goto(f"{daphne.base_url}/admin/oncall/alert/")
        alert_value = page.locator("td.field-value_shown").first.inner_text()
        alert_threshold = page.locator("td.field-threshold_shown").first.inner_text()
        page.goto(f"{daphne.base_url}/admin/inventory_ops/sku/")
        unit_cost_listed = page.locator("td.field-unit_cost_shown").first.inner_text()
        page.locator("th.field-code a").first.click()
        page.wait_for_selector("#id_unit_cost")
        unit_cost_label = page.locator("label[for=id_unit_cost]").inner_text()

    assert "2,050.00 USD" in value_row
    assert "2050.0000" not in change_page
    assert listed == "2,050.00 USD"
    assert unit_cost_listed == "2.05 USD"
    assert unit_cost_label.startswith("Unit cost (USD)")
    assert (alert_value, alert_threshold) == ("901.16 USD", "900.00 USD")
