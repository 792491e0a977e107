"""The alert rules a new deployment starts with (`load_runbooks` creates them when no rule
exists yet)."""

from decimal import Decimal

from django.db import transaction

from oncall.models import AlertKind, AlertRule, Severity

DEFAULT_ALERT_RULES = [
    # name, kind, threshold, hold seconds, window, severity
    ("Negative stock anywhere", AlertKind.NEGATIVE_STOCK, "0", 0, "1h", Severity.CRITICAL),
    (
        "Stock mismatch rate above 5% (24 h)",
        AlertKind.STOCK_MISMATCH_RATE,
        "0.05",
        0,
        "24h",
        Severity.WARNING,
    ),
    ("Failed jobs", AlertKind.FAILED_JOBS, "0", 0, "1h", Severity.WARNING),
    (
        "Job backlog above 1,000 for 2 minutes",
        AlertKind.QUEUE_BACKLOG,
        "1000",
        120,
        "1h",
        Severity.CRITICAL,
    ),
    ("A feed silent for 15 minutes", AlertKind.FEED_SILENT, "900", 0, "1h", Severity.CRITICAL),
    (
        "Ingest lag p95 above 60 s for 5 minutes",
        AlertKind.INGEST_LAG,
        "60",
        300,
        "1h",
        Severity.WARNING,
    ),
    ("More than 100 dead letters", AlertKind.DEAD_LETTERS, "100", 0, "1h", Severity.WARNING),
    # 14.4 spends 2 % of a 28-day budget in an hour; 6 spends 5 % in six hours (docs/slo.md).
    ("SLO fast burn", AlertKind.SLO_FAST_BURN, "14.4", 0, "1h", Severity.CRITICAL),
    ("SLO slow burn", AlertKind.SLO_SLOW_BURN, "6", 0, "1h", Severity.WARNING),
]


def alert_rules_default_create() -> int:
    """Create the default all-sites rules if there is no rule at all; return how many."""
    with transaction.atomic():
        if AlertRule.objects.exists():
            return 0
        AlertRule.objects.bulk_create(
            AlertRule(
                name=name,
                kind=kind,
                threshold=Decimal(threshold),
                hold_seconds=hold,
                window=window,
                severity=severity,
            )
            for name, kind, threshold, hold, window, severity in DEFAULT_ALERT_RULES
        )
    return len(DEFAULT_ALERT_RULES)
