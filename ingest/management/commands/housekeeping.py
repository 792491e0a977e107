"""Drop raw batch bodies and idempotency keys past their retention, archive old dead letters."""

from django.conf import settings
from django.core.management.base import BaseCommand

from core.progress import ProgressBar
from ingest.housekeeping import housekeeping_run, housekeeping_schedule_ensure


class Command(BaseCommand):
    help = (
        "Drop the raw bodies of batches received more than INGEST_BODY_RETENTION_DAYS ago, the "
        "idempotency keys of batches received more than INGEST_KEY_RETENTION_DAYS ago (an event "
        "re-sent after that is applied again), and archive dead letters replayed or discarded "
        "more than DEAD_LETTER_RETENTION_DAYS ago. Ledger rows are never deleted. Safe to stop "
        "and run again. The worker runs it every HOUSEKEEPING_INTERVAL_SECONDS once scheduled."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--schedule",
            action="store_true",
            help="Only make sure the periodic run is scheduled (the release step does this).",
        )

    def handle(self, *args, schedule=False, **options):
        if schedule:
            started = housekeeping_schedule_ensure()
            if started is None:
                # Not fatal for a release: the scheduled alert evaluation starts it later.
                self.stderr.write("housekeeping not scheduled: Redis did not answer")
                return
            state = "scheduled" if started else "already scheduled"
            interval = settings.HOUSEKEEPING_INTERVAL_SECONDS
            self.stdout.write(f"housekeeping {state}: every {interval} s")
            return
        report = housekeeping_run(progress=ProgressBar(self.stdout))
        for line in report.lines():
            self.stdout.write(line)
        self.stdout.write(self.style.SUCCESS("housekeeping done; ledger rows are never deleted"))
