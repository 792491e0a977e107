from django.apps import AppConfig


class DashboardsConfig(AppConfig):
    name = "dashboards"
    verbose_name = "Dashboards"

    def ready(self) -> None:
        # Connect the receivers that keep KPI rollups right when the catalog changes.
        from dashboards import signals  # noqa: F401
