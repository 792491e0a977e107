from django.apps import AppConfig
from django.db.backends.signals import connection_created


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "Core"

    def ready(self):
        from core.timechecks import readable_times_loader_register

        # Rows stored before the time constraints may hold times Python cannot read.
        connection_created.connect(
            readable_times_loader_register, dispatch_uid="readable_times_loader"
        )
