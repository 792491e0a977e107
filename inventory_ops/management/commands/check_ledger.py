from django.core.management.base import BaseCommand, CommandError

from inventory_ops.selectors import ledger_differences


class Command(BaseCommand):
    help = (
        "Verify that every stock level equals the sum of its movements. Lists every difference "
        "and exits non-zero if there is any."
    )

    def add_arguments(self, parser):
        parser.add_argument("--site", help="check one site only (its code)")

    def handle(self, *args, site=None, **options):
        checked, differences = ledger_differences(site_code=site)
        for difference in differences:
            self.stdout.write(f"MISMATCH {difference}")
        if differences:
            raise CommandError(
                f"ledger check failed: {len(differences)} of {checked} stock levels differ "
                "from the sum of their movements"
            )
        self.stdout.write(
            self.style.SUCCESS(f"ledger OK: {checked} stock levels match their movements")
        )
