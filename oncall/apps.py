from django.apps import AppConfig


class OncallConfig(AppConfig):
    name = "oncall"
    label = "oncall"
    verbose_name = "Alerts and runbooks"

    def ready(self) -> None:
        from ingest.signals import worker_beat
        from oncall.schedule import alerts_schedule_ensure

        # Every worker checks, every heartbeat, that the scheduled alert evaluation still has a
        # live job: a Redis restarted without its data lost the chain.
        worker_beat.connect(
            lambda **kwargs: alerts_schedule_ensure(), weak=False, dispatch_uid="alerts-schedule"
        )
