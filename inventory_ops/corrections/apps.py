from django.apps import AppConfig


class CorrectionsConfig(AppConfig):
    name = "inventory_ops.corrections"
    label = "corrections"
    verbose_name = "Stock corrections"
