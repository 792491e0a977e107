from django.apps import AppConfig


class OncallConfig(AppConfig):
    name = "oncall"
    label = "oncall"
    verbose_name = "Alerts and runbooks"

    def ready(self) -> None:
        from core.notify import stock_changed
        from ingest.signals import worker_beat
        from oncall.alerts import stock_changed_evaluation_request
        from oncall.schedule import alerts_schedule_ensure

        # A committed change of stock asks for an alert evaluation (cheap, coalesced).
        stock_changed.connect(stock_changed_evaluation_request, dispatch_uid="alerts-stock-changed")

        # Every worker checks, every heartbeat, that the scheduled alert evaluation still has a
        # live job: a Redis restarted without its data lost the chain.
        worker_beat.connect(
            lambda **kwargs: alerts_schedule_ensure(), weak=False, dispatch_uid="alerts-schedule"
        )
