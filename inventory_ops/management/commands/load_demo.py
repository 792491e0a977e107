import random

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from inventory_ops.catalog import SiteRow, SkuRow
from inventory_ops.demo.catalog import DEMO_SITES, DEMO_SKUS, DEMO_USERS
from inventory_ops.models import Movement, MovementCause, MovementKind
from inventory_ops.services import MovementRequest, catalog_import, movements_record

SEED_REF = "demo:opening-stock"


class Command(BaseCommand):
    help = (
        "Load demo sites, SKUs, opening stock and one user per role, and print their "
        "credentials. Safe to run again: it changes nothing that is already there."
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
        with transaction.atomic():
            catalog_import(
                sites=[SiteRow(code, name, tz) for code, name, tz in DEMO_SITES],
                skus=[SkuRow(code, name, cost, reorder) for code, name, cost, reorder in DEMO_SKUS],
            )
            self._users()
            seeded = self._opening_stock()
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo data ready: {len(DEMO_SITES)} sites, {len(DEMO_SKUS)} SKUs"
                + (", opening stock received." if seeded else " (opening stock already there).")
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

    def _opening_stock(self) -> bool:
        if Movement.objects.filter(cause_ref=SEED_REF).exists():
            return False
        rng = random.Random(7)
        now = timezone.now()
        movements_record(
            requests=[
                MovementRequest(
                    site=site_code,
                    sku=sku_code,
                    kind=MovementKind.RECEIVED,
                    on_hand_delta=rng.randint(reorder * 2, reorder * 6),
                    occurred_at=now,
                    cause=MovementCause.FEED_EVENT,
                    cause_ref=SEED_REF,
                )
                for site_code, _, _ in DEMO_SITES
                for sku_code, _, _, reorder in DEMO_SKUS
            ]
        )
        return True
