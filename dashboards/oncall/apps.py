from django.apps import AppConfig


class OncallConfig(AppConfig):
    name = "dashboards.oncall"
    label = "oncall"
    verbose_name = "Alerts and runbooks"

    def ready(self) -> None:
        from dashboards.oncall.schedule import alerts_schedule_ensure
        from ingest.signals import worker_beat

        # Every worker checks, every heartbeat, that the scheduled alert evaluation still has a
        # live job: a Redis restarted without its data lost the chain.
        worker_beat.connect(
            lambda **kwargs: alerts_schedule_ensure(), weak=False, dispatch_uid="alerts-schedule"
        )
