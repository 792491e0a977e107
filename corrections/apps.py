from django.apps import AppConfig


class CorrectionsConfig(AppConfig):
    name = "corrections"
    label = "corrections"
    verbose_name = "Stock corrections"
