import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta

from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections
from django.db.models import Max

from ingest.models import FeedSource
from ingest.simulation import DEFAULT_RATE, ROLES, SHOP, WAREHOUSE, FeedSimulator
from ingest.sources import feed_source_create, feed_source_rotate_token
from ledger.models import Movement, MovementKind, Site, Sku, StockLevel

DEFAULT_URL = "http://127.0.0.1:8000"
WARM_START_BATCH = 500  # orders under way at start, sent this many a batch
SOURCE_NAMES = {"shop": "simulator", "courier": "simulator-courier", "warehouse": "simulator-wms"}


def _token_for(name: str) -> str:
    """Create the source, or rotate its token: the simulator never needs a stored token."""
    source = FeedSource.objects.filter(name=name).first()
    if source is None:
        return feed_source_create(name=name).token
    # Demo traffic comes in many small batches: allow them.
    FeedSource.objects.filter(pk=source.pk).update(is_active=True, require_signature=False)
    return feed_source_rotate_token(source=source)


def sales_end() -> datetime | None:
    """Where the ledger's sales end: the end of the minute of its newest dispatch, or None.

    The demo history's sales are a minute's at the minute's middle (demo/history.py): the
    simulator takes over at the minute's end. From the newest dispatch itself, it sent the
    dispatches of the minute's second half on top of the history's, and the 1 h turnover chart
    read twice the rate (~65 against ~31 turns a year) for the minute of the start.
    """
    newest = Movement.objects.filter(kind=MovementKind.ORDER_DISPATCHED).aggregate(
        newest=Max("occurred_at")
    )["newest"]
    if newest is None:
        return None
    return newest.replace(second=0, microsecond=0) + timedelta(minutes=1)


class Command(BaseCommand):
    help = (
        "Send realistic courier, shop and warehouse traffic through the real HTTP ingest API "
        "(sources 'simulator', 'simulator-courier', 'simulator-wms', tokens rotated at start)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--rate",
            type=float,
            default=DEFAULT_RATE,
            help=f"events per second (default {DEFAULT_RATE:g}: the demo's traffic, which "
            "`load_demo` sizes its stock on)",
        )
        parser.add_argument(
            "--duration", type=float, default=0, help="seconds; 0 runs until stopped"
        )
        parser.add_argument("--sites", nargs="*", default=None, help="site codes (default: all)")
        parser.add_argument(
            "--url",
            default=os.environ.get("SIMULATOR_URL", DEFAULT_URL),
            help=f"the web process (env SIMULATOR_URL; default {DEFAULT_URL})",
        )
        parser.add_argument("--interval", type=float, default=1.0, help="seconds between batches")
        parser.add_argument("--seed", type=int, default=None)
        parser.add_argument(
            "--stock-refresh",
            type=float,
            default=5.0,
            help="seconds between reads of the real on-hand (GET /api/stock) that counts and "
            "snapshots start from; 0: never",
        )

    def handle(self, *args, rate, duration, sites, url, interval, seed, stock_refresh, **options):
        if rate <= 0 or interval <= 0:
            raise CommandError("--rate and --interval must be positive")
        url = url.rstrip("/")
        self._wait_for_web(url)
        site_codes, sku_codes = self._catalog(sites)
        tokens = {role: _token_for(name) for role, name in SOURCE_NAMES.items()}
        stock = {
            (site, sku): on_hand
            for site, sku, on_hand in StockLevel.objects.filter(
                site__code__in=site_codes
            ).values_list("site__code", "sku__code", "on_hand")
        }
        close_old_connections()
        simulator = FeedSimulator(sites=site_codes, skus=sku_codes, stock=stock, seed=seed)
        self.stdout.write(
            f"simulate_feeds: {rate:g} events/s to {url} for {len(site_codes)} sites, "
            f"{len(sku_codes)} SKUs" + (f", {duration:g} s" if duration else "")
        )
        started = time.monotonic()
        totals = {"events": 0, "accepted": 0, "refused": 0}
        # Orders already under way, so dispatches flow from the first second (the ledger's
        # sales end, e.g. the demo history's, is where they take over).
        now = datetime.now(UTC)
        since = min(now, sales_end() or now)
        close_old_connections()
        under_way = simulator.warm_start(now=now, since=since, rate=rate)
        for chunk_start in range(0, len(under_way), WARM_START_BATCH):
            chunk = under_way[chunk_start : chunk_start + WARM_START_BATCH]
            self._send(url, tokens[SHOP], chunk, totals)
        next_tick, owed = started, 0.0
        last_report = last_refresh = started
        sent: list[tuple[str, str]] = []  # (token, batch id) of the last tick
        while not duration or time.monotonic() - started < duration:
            if stock_refresh and time.monotonic() - last_refresh >= stock_refresh:
                on_hand = self._stock_read(url, tokens[WAREHOUSE], site_codes, sent)
                if on_hand is not None:
                    simulator.stock_observe(on_hand)
                    last_refresh = time.monotonic()
            owed += rate * interval
            count, owed = int(owed), owed - int(owed)
            batches = simulator.tick(now=datetime.now(UTC), count=count)
            sent = []
            for role in ROLES:
                if batches[role]:
                    batch_id = self._send(url, tokens[role], batches[role], totals)
                    if batch_id:
                        sent.append((tokens[role], batch_id))
            if time.monotonic() - last_report >= 10:
                last_report = time.monotonic()
                self._report(totals)
            next_tick += interval
            time.sleep(max(0.0, next_tick - time.monotonic()))
        self._report(totals)

    def _report(self, totals: dict) -> None:
        self.stdout.write(
            "simulate_feeds: {events} events sent, {accepted} accepted, {refused} refused".format(
                **totals
            )
        )

    def _wait_for_web(self, url: str) -> None:
        announced = False
        while True:
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=2):  # noqa: S310
                    return
            except (OSError, urllib.error.URLError):
                if not announced:
                    self.stdout.write(f"simulate_feeds: waiting for the web at {url} ...")
                    announced = True
                time.sleep(1)

    def _catalog(self, sites: list[str] | None) -> tuple[list[str], list[str]]:
        announced = False
        while True:
            site_qs = Site.objects.all()
            if sites:
                site_qs = site_qs.filter(code__in=sites)
            site_codes = list(site_qs.values_list("code", flat=True))
            sku_codes = list(Sku.objects.values_list("code", flat=True)[:200])
            if sites and set(sites) - set(site_codes):
                raise CommandError(
                    f"unknown site(s): {', '.join(sorted(set(sites) - set(site_codes)))}"
                )
            if site_codes and sku_codes:
                return site_codes, sku_codes
            if not announced:
                self.stdout.write(
                    "simulate_feeds: no sites or SKUs yet (run `manage.py load_demo`); waiting ..."
                )
                announced = True
            close_old_connections()
            time.sleep(2)

    def _get(self, url: str, token: str) -> dict:
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})  # noqa: S310
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return json.loads(response.read())

    def _stock_read(
        self, url: str, token: str, site_codes: list[str], sent: list[tuple[str, str]]
    ) -> dict[tuple[str, str], int] | None:
        """The real on-hand of the simulated sites, once the batches sent last are applied
        (else None: a count based on it would miss them; try again next tick)."""
        try:
            for batch_token, batch_id in sent:
                if (
                    self._get(f"{url}/api/ingest/batches/{batch_id}", batch_token)["status"]
                    != "done"
                ):
                    return None
            on_hand = {}
            for site in site_codes:
                offset = 0
                while True:
                    page = self._get(
                        f"{url}/api/stock?site={urllib.parse.quote(site)}&limit=10000&offset={offset}",
                        token,
                    )
                    on_hand.update(
                        {(item["site"], item["sku"]): item["on_hand"] for item in page["items"]}
                    )
                    offset += len(page["items"])
                    if not page["items"] or offset >= page["count"]:
                        break
        except (OSError, ValueError, KeyError) as error:
            self.stderr.write(f"simulate_feeds: stock not read ({error}); keeping its own view")
            return None
        return on_hand

    def _send(self, url: str, token: str, events: list[dict], totals: dict) -> str | None:
        """POST the events; the batch id if accepted."""
        body = json.dumps({"events": events}).encode()
        request = urllib.request.Request(  # noqa: S310 (the configured web URL)
            f"{url}/api/ingest/events",
            data=body,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        totals["events"] += len(events)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                answer = json.loads(response.read())
                totals["accepted"] += answer["accepted"]
                return answer["batch_id"]
        except urllib.error.HTTPError as error:
            totals["refused"] += len(events)
            detail = error.read()[:300].decode(errors="replace")
            self.stderr.write(f"simulate_feeds: {error.code} {detail}")
        except OSError as error:
            totals["refused"] += len(events)
            self.stderr.write(f"simulate_feeds: the web did not answer ({error}); continuing")
        return None
