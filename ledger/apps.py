from django.apps import AppConfig


class LedgerConfig(AppConfig):
    """The stock ledger. Its label stays `inventory_ops`, the label it had when it lived in the
    project package: table names, migration history, content types and permission codenames
    (`inventory_ops.change_stocklevel`) are keyed by it, so moving the code changed no row."""

    name = "ledger"
    label = "inventory_ops"
    verbose_name = "Stock"
