from django.apps import AppConfig


class IngestConfig(AppConfig):
    name = "ingest"
    verbose_name = "Ingest"

    def ready(self) -> None:
        from ingest.delivery_keys import delivery_keys_backfill
        from ingest.selectors import feeds_freshness_fold, feeds_freshness_statement
        from kpis.reads import kpi_rider_register
        from kpis.rebuild import rebuild_preparer_register

        # Every KPI read (/api/kpis, the dashboards, alert measures) carries the feeds' freshness.
        kpi_rider_register("feeds", statement=feeds_freshness_statement, fold=feeds_freshness_fold)
        # `rebuild_kpis` first gives old deliveries the channel and courier ingest still knows.
        rebuild_preparer_register("delivery_keys", delivery_keys_backfill)
