from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from demo.catalog import DEMO_SITES, DEMO_SKUS, DEMO_USERS
from demo.history import (
    HISTORY_DAYS,
    OPENING_REF,
    demo_history,
    reorder_point,
    slo_history,
)
from demo.orders import demo_order_facts
from ingest.simulation import DEFAULT_RATE, counts_per_level_hour, units_shipped_per_day
from kpis.rollups import rollups_facts_record
from ledger.catalog import SiteRow, SkuRow
from ledger.models import Movement, Site, Sku
from ledger.services import catalog_import, movements_record
from slos.counters import slo_counts_write


class Command(BaseCommand):
    help = (
        "Load demo sites, SKUs, five weeks of stock history (opening stock, sales, receipts) "
        "and one user per role, and print their credentials. Safe to run again: it changes "
        "nothing that is already there."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--force", action="store_true", help="load even with DEBUG off (demo passwords!)"
        )

    def handle(self, *args, force=False, **options):
        if not settings.DEBUG and not force:
            raise CommandError(
                "load_demo creates users with well-known passwords; with DEBUG off it needs --force"
            )
        # the simulator's sales rate at its default traffic: one business, one scale
        catalog = {
            "sites": [code for code, _, _ in DEMO_SITES],
            "skus": [code for code, *_ in DEMO_SKUS],
        }
        daily_units = units_shipped_per_day(**catalog)
        with transaction.atomic():
            catalog_import(
                sites=[SiteRow(code, name, tz) for code, name, tz in DEMO_SITES],
                # reorder points sized to that demand (the catalog's own are a small shop's)
                skus=[
                    SkuRow(code, name, cost, reorder_point(daily_units))
                    for code, name, cost, _ in DEMO_SKUS
                ],
            )
            self._users()
            seeded = self._stock_history(daily_units, counts_per_level_hour(**catalog))
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo data ready: {len(DEMO_SITES)} sites, {len(DEMO_SKUS)} SKUs"
                + (
                    f", {HISTORY_DAYS} days of stock history."
                    if seeded
                    else " (stock history already there)."
                )
            )
        )
        call_command("load_runbooks", stdout=self.stdout)
        self.stdout.write("Demo users (local use only):")
        for username, password, group, is_superuser in DEMO_USERS:
            role = "superuser" if is_superuser else group
            self.stdout.write(f"  {role:<12} username: {username:<8} password: {password}")

    def _users(self):
        User = get_user_model()
        for username, password, group_name, is_superuser in DEMO_USERS:
            user, created = User.objects.get_or_create(
                username=username, defaults={"is_staff": True, "is_superuser": is_superuser}
            )
            if created:
                user.set_password(password)
                user.save()
            if group_name:
                user.groups.add(Group.objects.get(name=group_name))

    def _stock_history(self, daily_units: float, counts_per_hour: float) -> bool:
        if Movement.objects.filter(cause_ref=OPENING_REF).exists():
            return False
        sites = [code for code, _, _ in DEMO_SITES]
        skus = [code for code, *_ in DEMO_SKUS]
        now = timezone.now()
        slo_counts_write(slo_history(now=now))
        # The history ends on the last whole minute (its sales are a minute's at the minute's
        # middle): simulate_feeds takes over from the end of its newest dispatch's minute, so
        # neither the history nor the simulator counts the sales of that minute's second half.
        end = now.replace(second=0, microsecond=0)
        history = demo_history(
            pairs=[(site, sku) for site in sites for sku in skus],
            daily_units=daily_units,
            now=end,
            counts_per_hour=counts_per_hour,
        )
        movements_record(requests=history)
        order_lines, deliveries = demo_order_facts(
            site_ids=list(Site.objects.filter(code__in=sites).values_list("id", flat=True)),
            sku_ids=list(Sku.objects.filter(code__in=skus).values_list("id", flat=True)),
            rate=DEFAULT_RATE,
            now=end,
            sales_end=end,
        )
        rollups_facts_record(order_lines=order_lines, deliveries=deliveries)
        return True
