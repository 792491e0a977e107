"""The alert page names what an alert is about: the SKUs, feeds or dead-letter sources."""

from decimal import Decimal

import pytest

from core.roles import ON_CALL
from ledger.services import movements_record
from oncall.models import Alert, AlertKind, AlertRule
from oncall.selectors import CONCERNS_SHOWN, alert_concerns
from oncall.services import alerts_evaluate
from tests.builders import site_make, sku_make, user_make
from tests.oncall.test_alerts import dispatch

pytestmark = pytest.mark.django_db


def negative_stock_alert(site, skus) -> Alert:
    AlertRule.objects.create(
        name="Negative stock", kind=AlertKind.NEGATIVE_STOCK, site=site, threshold=Decimal(0)
    )
    movements_record(requests=[dispatch(site, sku, 2 + index) for index, sku in enumerate(skus)])
    alerts_evaluate(site_codes=None)
    return Alert.objects.get()


def test_a_negative_stock_alert_page_names_each_sku_worst_first_with_its_lineage(client):
    site = site_make("ams")
    alert = negative_stock_alert(site, [sku_make("TEA", name="Green tea"), sku_make("MILK")])
    client.force_login(user_make(role=ON_CALL, is_staff=True))

    page = client.get(f"/oncall/alerts/{alert.pk}/").content.decode()

    assert "data-concerns" in page
    assert page.index("ams / MILK") < page.index("ams / TEA Green tea")
    assert 'href="/skus/TEA/?site=ams">ams / TEA Green tea: on hand -2, available -2' in page


def test_concerns_are_capped_with_a_count_of_the_rest():
    site = site_make("ams")
    alert = negative_stock_alert(site, [sku_make(f"S{n}") for n in range(CONCERNS_SHOWN + 3)])

    concerns = alert_concerns(alert)

    assert len(concerns) == CONCERNS_SHOWN + 1
    assert concerns[-1] == {"label": "and 3 more", "url": None}
