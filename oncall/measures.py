"""The number each alert kind watches, for one rule's scope.

KPI kinds read only `kpis.reads.kpis_compute`; SKUs running out read the restocking
suggestions (`kpis.restock`); operational kinds read RQ (and the dead letter store). `None`
means "no data": it neither opens nor resolves an alert.
"""

import logging
from decimal import ROUND_FLOOR, Decimal

from django.conf import settings
from redis.exceptions import RedisError

from core.probes import queue_counts
from ingest.models import DeadLetter, DeadLetterStatus
from kpis.formatting import NONE_SHOWN, kpi_format
from kpis.reads import kpis_compute
from kpis.restock import fewest_days_of_cover
from oncall.models import AlertKind, AlertRule
from slos.reads import SloStatus, slos_status

logger = logging.getLogger(__name__)


KPI_KEY_OF_KIND = {
    AlertKind.NEGATIVE_STOCK: "negative_stock",
    AlertKind.STOCKOUTS: "stockouts",
    AlertKind.BELOW_REORDER_POINT: "below_reorder_point",
    AlertKind.STOCK_MISMATCH_RATE: "stock_mismatch_rate",
    AlertKind.MISMATCH_VALUE: "mismatch_value",
    AlertKind.ORDER_ACCURACY: "order_accuracy",
}


# How each kind's measure reads for people (formats of kpi_format); counts are the rest.
MEASURE_FORMATS = {
    AlertKind.STOCK_MISMATCH_RATE: "percent",
    AlertKind.ORDER_ACCURACY: "percent",
    AlertKind.MISMATCH_VALUE: "money",
    AlertKind.FEED_SILENT: "duration",
    AlertKind.INGEST_LAG: "duration",
    AlertKind.RUNNING_OUT: "decimal",
    AlertKind.SLO_FAST_BURN: "decimal",
    AlertKind.SLO_SLOW_BURN: "decimal",
}
# Days of cover are kept to 4 decimals, as thresholds are, rounded down: a cover of 2.99996
# days is under a 3-day threshold and reads 2.9999, not 3.0000.
COVER_PLACES = Decimal("0.0001")

# Multiwindow burn-rate alerts (the SRE workbook's): the long window says the budget is really
# burning, the short one that it still is, so the alert resolves soon after the burn stops.
SLO_BURN_WINDOWS = {
    AlertKind.SLO_FAST_BURN: ("1h", "5m"),
    AlertKind.SLO_SLOW_BURN: ("6h", "30m"),
}


def slo_burn_min_events() -> int:
    return int(getattr(settings, "SLO_BURN_MIN_EVENTS", 50))


def slo_burn_measure(kind: str, statuses: list[SloStatus]) -> tuple[Decimal, str | None]:
    """The highest burn rate held over both windows of `kind` among the SLOs, and that SLO.

    A window with no events burns nothing (0): traffic stopping resolves the alert. Nor does a
    long window with fewer than SLO_BURN_MIN_EVENTS events: one bad snapshot line out of eight
    is a burn rate of 6, and says nothing yet about what users feel.
    """
    long_window, short_window = SLO_BURN_WINDOWS[kind]
    worst, worst_slo = 0.0, None
    for status in statuses:
        if status.window_totals.get(long_window, 0) < slo_burn_min_events():
            continue
        held = min(status.burn_rates[long_window] or 0.0, status.burn_rates[short_window] or 0.0)
        if held > worst:
            worst, worst_slo = held, status.slo
    return Decimal(str(round(worst, 4))), worst_slo


def measure_shown(value, kind: str) -> str:
    """An alert's value or threshold for people: 901, 5.0%, 15.0 min, 2,050.00 USD (a Decimal
    read "9E+2" and "901.1638")."""
    if value is None:
        return NONE_SHOWN
    value_format = MEASURE_FORMATS.get(kind, "integer")
    if value_format == "integer" and float(value) != int(value):
        value_format = "decimal"  # a count rule's fractional threshold, as written
    return kpi_format(value, value_format)


class MeasureCache:
    """One evaluation's memo: several rules on one scope and window cost one KPI computation."""

    def __init__(self):
        self._kpis: dict[tuple[str | None, str], dict] = {}
        self._rq: dict[str, Decimal | None] = {}
        self._cover: dict[str | None, Decimal | None] = {}
        self._slos: list[SloStatus] | None = None

    def kpis(self, site: str | None, window: str) -> dict:
        key = (site, window)
        if key not in self._kpis:
            self._kpis[key] = kpis_compute(site=site, window=window)
        return self._kpis[key]

    def fewest_days_of_cover(self, site: str | None) -> Decimal | None:
        if site not in self._cover:
            cover = fewest_days_of_cover(site=site)
            self._cover[site] = (
                None
                if cover is None
                else (Decimal(cover.numerator) / Decimal(cover.denominator)).quantize(
                    COVER_PLACES, rounding=ROUND_FLOOR
                )
            )
        return self._cover[site]

    def slos(self) -> list[SloStatus]:
        if self._slos is None:
            self._slos = slos_status()
        return self._slos

    def rq(self, kind: str) -> Decimal | None:
        if kind not in self._rq:
            self._rq[kind] = _rq_measure(kind)
        return self._rq[kind]


def _number(value) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def rule_measure(rule: AlertRule, cache: MeasureCache) -> Decimal | None:
    site = rule.site.code if rule.site_id else None
    if rule.kind in KPI_KEY_OF_KIND:
        return _number(cache.kpis(site, rule.window).get(KPI_KEY_OF_KIND[rule.kind]))
    if rule.kind in (AlertKind.FEED_SILENT, AlertKind.INGEST_LAG):
        key = "freshness_s" if rule.kind == AlertKind.FEED_SILENT else "lag_p95_s"
        values = [
            feed[key]
            for feed in cache.kpis(site, rule.window).get("feeds", [])
            if feed[key] is not None
        ]
        return _number(max(values)) if values else None
    if rule.kind == AlertKind.DEAD_LETTERS:
        return _number(dead_letters_waiting())
    if rule.kind == AlertKind.RUNNING_OUT:
        # The fewest days of cover in scope: below N days, some SKU runs out within N days.
        return cache.fewest_days_of_cover(site)
    if rule.kind in SLO_BURN_WINDOWS:
        return slo_burn_measure(rule.kind, cache.slos())[0]
    return cache.rq(rule.kind)


def _rq_measure(kind: str) -> Decimal | None:
    try:
        if kind == AlertKind.FAILED_JOBS:
            return Decimal(sum(counts.failed for counts in queue_counts()))
        if kind == AlertKind.QUEUE_BACKLOG:
            return Decimal(sum(counts.queued for counts in queue_counts()))
    except RedisError as error:
        logger.warning("cannot measure %s: Redis unreachable (%s)", kind, error)
        return None
    raise ValueError(f"no measure for alert kind {kind!r}")


def dead_letters_waiting() -> int:
    """Dead letters still open (neither replayed nor discarded)."""
    return DeadLetter.objects.filter(status=DeadLetterStatus.OPEN).count()
