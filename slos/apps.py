from django.apps import AppConfig


class SlosConfig(AppConfig):
    """Service level objectives: per-minute good/total counters and their error budgets."""

    name = "slos"
    verbose_name = "Service level objectives"
