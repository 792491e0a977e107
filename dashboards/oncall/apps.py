from django.apps import AppConfig


class OncallConfig(AppConfig):
    name = "dashboards.oncall"
    label = "oncall"
    verbose_name = "Alerts and runbooks"
