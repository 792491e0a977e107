from django.apps import AppConfig


class DemoConfig(AppConfig):
    """Demo data (`load_demo`): a catalog, users and a history, written through the services."""

    name = "demo"
    verbose_name = "Demo data"
