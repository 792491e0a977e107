from django.apps import AppConfig
from django.db.backends.signals import connection_created


class InventoryOpsConfig(AppConfig):
    name = "inventory_ops"
    verbose_name = "Stock"

    def ready(self):
        from inventory_ops.timechecks import readable_times_loader_register

        # Rows stored before the time constraints may hold times Python cannot read.
        connection_created.connect(
            readable_times_loader_register, dispatch_uid="readable_times_loader"
        )
