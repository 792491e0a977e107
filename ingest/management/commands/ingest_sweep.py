import threading

from django.core.management.base import BaseCommand

from ingest.sweep import ingest_sweep
from ingest.worker import sweeper_loop


class Command(BaseCommand):
    help = (
        "Enqueue stored batches that have no live job, apply held events whose order exists, "
        "reject held events past the holding period. Once, or with --every N in a loop "
        "(the Procfile's worker already sweeps; this is for operators and cron)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--every", type=float, default=0, help="loop every N seconds")

    def handle(self, *args, every, **options):
        if not every:
            self.stdout.write(str(ingest_sweep()))
            return
        sweeper_loop(interval=every, stop=threading.Event())
