from django.apps import AppConfig


class DashboardsConfig(AppConfig):
    """The screens. Its label is `screens`: `dashboards` is the label of the KPI read model
    (`kpis/`), which owns the rollup tables that app label names (`dashboards_*`)."""

    name = "dashboards"
    label = "screens"
    verbose_name = "Dashboards"

    def ready(self) -> None:
        # The live broadcasts hear of committed changes.
        from dashboards import receivers  # noqa: F401
