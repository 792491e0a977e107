from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from core.timebounds import STORABLE_FROM, STORABLE_UNTIL
from ledger.selectors import ledger_differences, stored_times_out_of_range


class Command(BaseCommand):
    help = (
        "Verify that every stock level equals the sum of its movements, and that every stored "
        "event time can be read. Lists every difference and unreadable row and exits non-zero "
        "if there is any."
    )

    def add_arguments(self, parser):
        parser.add_argument("--site", help="check one site only (its code)")

    def handle(self, *args, site=None, **options):
        problems = []
        unreadable, rows = stored_times_out_of_range()
        for row in rows:
            self.stdout.write(f"UNREADABLE {row}")
        if unreadable:
            problems.append(
                f"{unreadable} row(s) hold a time outside {STORABLE_FROM:%Y-%m-%d} .. "
                f"{STORABLE_UNTIL:%Y-%m-%d} that no page can read (see docs/ingest.md, "
                "'Time columns')"
            )
        try:
            checked, differences = ledger_differences(site_code=site)
        except DatabaseError as error:
            raise CommandError(f"ledger check failed: could not read the ledger: {error}") from None
        for difference in differences:
            self.stdout.write(f"MISMATCH {difference}")
        if differences:
            problems.append(
                f"{len(differences)} of {checked} stock levels differ from the sum of their "
                "movements"
            )
        if problems:
            raise CommandError("ledger check failed: " + "; ".join(problems))
        self.stdout.write(
            self.style.SUCCESS(f"ledger OK: {checked} stock levels match their movements")
        )
