"""Recompute every KPI rollup from the ledger and the stored KPI facts."""

import time

from django.core.management.base import BaseCommand, CommandError

from core.progress import ProgressBar
from kpis.rebuild import rollups_rebuild
from ledger.models import Site


class Command(BaseCommand):
    help = (
        "Recompute every KPI rollup (buckets, fulfillment histogram, revaluations, stock status) "
        "from the movement ledger and the stored delivery, order-line and snapshot facts. "
        "Writers wait while it runs (one transaction)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--site", metavar="CODE", help="Rebuild one site only.")

    def handle(self, *args, site=None, **options):
        site_id = None
        if site:
            site_id = Site.objects.filter(code=site).values_list("id", flat=True).first()
            if site_id is None:
                known = ", ".join(Site.objects.values_list("code", flat=True)[:20])
                raise CommandError(f"no site with code {site!r} (known: {known or 'none'})")
        started = time.monotonic()
        counts = rollups_rebuild(site_id=site_id, progress=ProgressBar(self.stdout))
        elapsed = time.monotonic() - started
        keys = counts["prepared"].get("delivery_keys")
        if keys and keys["looked_at"]:
            self.stdout.write(
                f"Deliveries without channel and courier: {keys['looked_at']:,}; given their "
                f"channel: {keys['channels']:,}, their courier: {keys['couriers']:,} "
                "(from the stored orders and the batch bodies still kept)."
            )
        self.stdout.write(
            self.style.SUCCESS(
                f"Rebuilt KPI rollups{f' of site {site}' if site else ''} from "
                f"{counts['movements']:,} movements: {counts['buckets']:,} buckets, "
                f"{counts['stock_levels']:,} stock levels, in {elapsed:.1f} s."
            )
        )
