from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from oncall.default_rules import alert_rules_default_create
from oncall.exceptions import RunbookInvalid
from oncall.schedule import alerts_schedule_ensure
from oncall.services import runbooks_load

SHIPPED_RUNBOOKS = Path(settings.BASE_DIR) / "docs" / "runbooks"


class Command(BaseCommand):
    help = (
        "Load the shipped runbooks (docs/runbooks/*.md) and, when no alert rule exists yet, the "
        "default alert rules. Safe to run again: unchanged runbooks are left alone and a runbook "
        "edited in the admin is never overwritten."
    )

    def add_arguments(self, parser):
        parser.add_argument("--directory", default=str(SHIPPED_RUNBOOKS))

    def handle(self, *args, directory, **options):
        path = Path(directory)
        if not path.is_dir():
            raise CommandError(f"{path} is not a directory")
        try:
            outcome = runbooks_load(directory=path)
        except RunbookInvalid as error:
            raise CommandError(f"runbook not loaded: {error}") from None
        for state, slugs in outcome.items():
            if slugs:
                self.stdout.write(f"runbooks {state}: {', '.join(slugs)}")
        if outcome["kept"]:
            self.stdout.write(
                self.style.WARNING(
                    "runbooks edited in the admin were kept; their shipped files differ"
                )
            )
        created = alert_rules_default_create()
        if created:
            self.stdout.write(f"default alert rules created: {created}")
        if alerts_schedule_ensure():
            self.stdout.write("scheduled alert evaluation started")
        self.stdout.write(self.style.SUCCESS("runbooks ready"))
