from django.apps import AppConfig


class DashboardsConfig(AppConfig):
    name = "dashboards"
    verbose_name = "Dashboards"

    def ready(self) -> None:
        # Connect what the dashboards hear from below: ledger writes and catalog changes (the
        # KPI rollups), committed changes (the live broadcasts).
        from dashboards import receivers  # noqa: F401
