"""A small world with one of everything, and one user per kind of visitor, for access tests."""

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.utils import timezone

from core.roles import MANAGERS, ON_CALL, STOCK_STAFF
from corrections.countsheet_services import count_sheet_apply, count_sheet_create
from corrections.countsheets import CountRow
from corrections.models import CountSheetLine
from corrections.services import CorrectionDraft, corrections_request
from ingest.models import DeadLetter, HeldEvent, IngestBatch
from ledger.models import Movement, StockLevel
from ledger.services import movements_record
from oncall.models import (
    Alert,
    AlertKind,
    AlertRule,
    NotificationChannel,
    NotificationDelivery,
    RemediationAction,
    Runbook,
    Silence,
)
from oncall.services import alerts_evaluate, runbook_save
from slos.models import Slo, SloTarget
from tests.builders import dispatch, receive, site_make, sku_make, user_make
from tests.ingest.helpers import batch_apply, order_dispatched, received, source_make

PASSWORD = "pw-for-tests"
ANONYMOUS = "anonymous"
NO_GROUP = "no-group"
SUPERUSER = "superuser"
# Every kind of visitor: nobody, a staff account in no group, each role, a superuser.
VISITORS = (ANONYMOUS, NO_GROUP, MANAGERS, STOCK_STAFF, ON_CALL, SUPERUSER)


def visitors_make() -> dict[str, object]:
    """One staff user per visitor kind (None for anonymous), as load_demo makes them."""
    users = {ANONYMOUS: None}
    users[NO_GROUP] = user_make("nogroup", password=PASSWORD, is_staff=True)
    for role in (MANAGERS, STOCK_STAFF, ON_CALL):
        users[role] = user_make(role.replace("-", ""), password=PASSWORD, is_staff=True)
        users[role].groups.add(Group.objects.get(name=role))
    users[SUPERUSER] = get_user_model().objects.create_superuser(
        "root", "root@example.com", PASSWORD
    )
    return users


@dataclass
class World:
    """One object of each kind the pages show, by model label (`app_label.model_name`)."""

    objects: dict[str, object]
    users: dict[str, object]

    def pk(self, label: str) -> int:
        return self.objects[label].pk


def world_make() -> World:
    users = visitors_make()
    site, sku = site_make("ams"), sku_make("TEA", unit_cost="2.00")
    other = sku_make("MUG", unit_cost="300.00")
    movements_record(requests=[receive(site, sku, 100), receive(site, other, 10)])
    staff = users[STOCK_STAFF]
    small, waiting = corrections_request(
        drafts=[
            CorrectionDraft(site="ams", sku="TEA", reason="found", delta=1),
            CorrectionDraft(site="ams", sku="MUG", reason="lost", delta=-5),
        ],
        requested_by=staff,
    )
    sheet = count_sheet_create(
        filename="shelf.csv",
        rows=[CountRow(line_number=2, site_id=site.pk, sku_id=sku.pk, counted_qty=99)],
        uploaded_by=staff,
    )
    waiting_sheet = count_sheet_create(
        filename="mugs.csv",
        rows=[CountRow(line_number=2, site_id=site.pk, sku_id=other.pk, counted_qty=0)],
        uploaded_by=staff,
    )
    count_sheet_apply(sheet_id=waiting_sheet.pk, applied_by=staff)  # worth 1,500: waits

    source, _ = source_make("courier")
    batch_apply(
        source,
        [received("NO-SUCH-SKU", 1, site="ams"), order_dispatched("unknown-order", site="ams")],
    )
    # Negative stock opens an alert, covered by a runbook with one version.
    movements_record(requests=[dispatch(site, sku, 500)])
    rule = AlertRule.objects.create(
        name="Negative stock", kind=AlertKind.NEGATIVE_STOCK, threshold=Decimal(0)
    )
    alerts_evaluate(site_codes=["ams"])
    runbook = Runbook(
        slug="negative-stock",
        title="Negative stock",
        owner="ops",
        last_reviewed=date(2026, 12, 1),
        alert_kinds=[AlertKind.NEGATIVE_STOCK],
        body="# Negative stock",
    )
    runbook_save(runbook=runbook, edited_by=users[ON_CALL])
    remediation = RemediationAction.objects.create(
        kind=RemediationAction._meta.get_field("kind").choices[0][0],
        actor=users[ON_CALL],
        requested_at=timezone.now(),
        status="done",
    )
    channel = NotificationChannel.objects.create(
        name="ops", kind="webhook", url="http://127.0.0.1:9/hook", enabled=False
    )
    login_seen = {"user_agent": "test", "ip_address": "127.0.0.1", "username": "clerk"}
    objects = {
        "axes.accessattempt": AccessAttempt.objects.create(
            **login_seen, get_data="", post_data="", failures_since_start=1
        ),
        "axes.accesslog": AccessLog.objects.create(**login_seen),
        "axes.accessfailurelog": AccessFailureLog.objects.create(**login_seen),
        "inventory_ops.site": site,
        "inventory_ops.sku": sku,
        "inventory_ops.stocklevel": StockLevel.objects.get(site=site, sku=sku),
        "inventory_ops.movement": Movement.objects.filter(site=site).first(),
        "corrections.correction": small,
        "corrections.correction:pending": waiting,
        "corrections.countsheet": sheet,
        "corrections.countsheet:pending": waiting_sheet,
        "corrections.countsheetline": CountSheetLine.objects.filter(sheet=sheet).first(),
        "ingest.feedsource": source,
        "ingest.ingestbatch": IngestBatch.objects.get(source=source),
        "ingest.deadletter": DeadLetter.objects.get(),
        "ingest.heldevent": HeldEvent.objects.get(),
        "oncall.alertrule": rule,
        "oncall.alert": Alert.objects.get(),
        "oncall.runbook": runbook,
        "oncall.remediationaction": remediation,
        "oncall.notificationchannel": channel,
        "oncall.silence": Silence.objects.create(
            site=site,
            starts_at=timezone.now(),
            ends_at=timezone.now() + timedelta(days=1),
            reason="stocktake",
            created_by=users[ON_CALL],
            created_at=timezone.now(),
        ),
        "oncall.notificationdelivery": NotificationDelivery.objects.create(
            channel=channel,
            alert=Alert.objects.get(),
            event="firing",
            status="sent",
            created_at=timezone.now(),
        ),
        "slos.slotarget": SloTarget.objects.get_or_create(
            slo=Slo.FRESHNESS, defaults={"target": Decimal("0.99")}
        )[0],
        "auth.user": users[STOCK_STAFF],
        "auth.group": Group.objects.get(name=STOCK_STAFF),
    }
    return World(objects=objects, users=users)
