from django.apps import AppConfig


class InventoryOpsConfig(AppConfig):
    name = "inventory_ops"
    verbose_name = "Stock"
