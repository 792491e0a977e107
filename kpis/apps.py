from django.apps import AppConfig


class KpisConfig(AppConfig):
    """The KPI read model. Its label stays `dashboards`, the label it had when it lived in the
    dashboards app: the rollup tables (`dashboards_*`), their migration history and content
    types are keyed by it, so moving the code changed no row."""

    name = "kpis"
    label = "dashboards"
    verbose_name = "KPIs"

    def ready(self) -> None:
        # The rollups hear every ledger write and catalog change, in the writer's transaction.
        from kpis import receivers  # noqa: F401
