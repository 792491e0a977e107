import time

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Send realistic feed traffic through the ingest API (placeholder until ingest lands)."

    def add_arguments(self, parser):
        parser.add_argument("--rate", type=float, default=20.0, help="events per second")
        parser.add_argument(
            "--duration", type=float, default=0, help="seconds; 0 runs until stopped"
        )
        parser.add_argument("--sites", nargs="*", default=None, help="site codes (default: all)")

    def handle(self, *args, rate, duration, sites, **options):
        self.stdout.write("simulate_feeds: the ingest API is not built yet; idling.")
        started = time.monotonic()
        while not duration or time.monotonic() - started < duration:
            time.sleep(1)
