from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from ledger.catalog import parse_sites, parse_skus
from ledger.exceptions import CatalogError
from ledger.services import catalog_import


class Command(BaseCommand):
    help = (
        "Create or update sites (code,name[,timezone]) and SKUs (code,name,unit_cost"
        "[,reorder_point]) from CSV files. A file with any error writes nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("--sites", type=Path, help="CSV of sites: code,name[,timezone]")
        parser.add_argument(
            "--skus", type=Path, help="CSV of SKUs: code,name,unit_cost[,reorder_point]"
        )

    def handle(self, *args, sites=None, skus=None, **options):
        if not sites and not skus:
            raise CommandError("give --sites FILE, --skus FILE, or both")
        problems, site_rows, sku_rows = [], [], []
        for path, parse, into in ((sites, parse_sites, site_rows), (skus, parse_skus, sku_rows)):
            if path is None:
                continue
            try:
                data = path.read_bytes()
            except OSError as error:
                problems.append(f"{path}: cannot read ({error.strerror})")
                continue
            try:
                into.extend(parse(data, filename=str(path)))
            except CatalogError as error:
                problems.extend(error.problems)
        if problems:
            raise CommandError(
                "nothing imported; fix these and run again:\n  " + "\n  ".join(problems)
            )
        counts = catalog_import(sites=site_rows, skus=sku_rows)
        self.stdout.write(
            self.style.SUCCESS(
                "catalog imported: {sites_created} sites created, {sites_updated} updated; "
                "{skus_created} SKUs created, {skus_updated} updated".format(**counts)
            )
        )
