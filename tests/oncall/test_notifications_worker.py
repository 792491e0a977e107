"""Paging end to end: a real RQ worker process (with RQ's scheduler, as the Procfile runs it)
sends an alert's firing, acknowledgement and resolution to a real local HTTP receiver that
refuses the first attempt."""

from decimal import Decimal

import pytest

from core.roles import ON_CALL
from ledger.services import movements_record
from oncall.models import Alert, AlertKind, AlertRule, AlertStatus, NotificationChannel
from oncall.services import alert_transition, alerts_evaluate
from tests.builders import receive, site_make, sku_make, user_make
from tests.oncall.receiver import Receiver
from tests.oncall.test_alerts import dispatch
from tests.processes import manage_py, running, subprocess_env, worker_registered_wait

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_a_worker_pages_a_receiver_through_an_alerts_life_retrying_a_refusal(redis_clean):
    site, sku = site_make("ams"), sku_make("TEA")
    AlertRule.objects.create(
        name="Negative stock at Amsterdam",
        kind=AlertKind.NEGATIVE_STOCK,
        site=site,
        threshold=Decimal("0"),
        severity="critical",
    )
    engineer = user_make("dana", role=ON_CALL)
    worker = manage_py(
        *("rqworker", "default", "--worker-class", "rq.worker.SimpleWorker", "--with-scheduler")
    )
    env = subprocess_env(NOTIFICATION_RETRY_DELAYS="1,1", PUBLIC_URL="https://ops.example.com")

    with (
        Receiver(statuses=(503, 200)) as receiver,
        running(worker, env=env, log_name="worker-notifications") as process,
    ):
        worker_registered_wait(process.pid)
        NotificationChannel.objects.create(name="pager", kind="webhook", url=receiver.url)

        # when stock goes negative: the firing is refused once, then retried and delivered
        movements_record(requests=[dispatch(site, sku, 3)])
        alerts_evaluate(site_codes=None)
        alert = Alert.objects.get()
        firing = receiver.wait_for(2)[-1]

        # when on-call acknowledges, and later the stock comes back
        alert_transition(
            alert_id=alert.pk, to_status=AlertStatus.ACKNOWLEDGED, user=engineer, note="on it"
        )
        receiver.wait_for(3)
        movements_record(requests=[receive(site, sku, 3)])
        alerts_evaluate(site_codes=None)
        bodies = receiver.wait_for(4)

    assert [body["event"] for body in bodies] == ["firing", "firing", "acknowledged", "resolved"]
    assert firing["alert"]["url"] == f"https://ops.example.com/oncall/alerts/{alert.pk}/"
    assert bodies[2]["transition"]["note"] == "on it"
    assert bodies[3]["alert"]["status"] == "resolved"
    log = list(alert.deliveries.order_by("pk").values_list("event", "status", "attempts"))
    assert log == [("firing", "sent", 2), ("acknowledged", "sent", 1), ("resolved", "sent", 1)]
    assert alert.deliveries.get(event="firing").response_status == 200
