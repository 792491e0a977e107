from django.core.management.base import BaseCommand, CommandError
from redis.exceptions import RedisError

from ingest.heartbeats import heartbeat_max_age, local_heartbeats, redis_heartbeats


class Command(BaseCommand):
    help = (
        "Exit 0 if a worker on this host (or the worker --pid) sent a heartbeat within the last "
        "few seconds, else 1: for a process supervisor or a Kubernetes exec liveness probe. "
        "A worker waiting for Redis or the database to come back is alive (it resumes by "
        "itself). With --anywhere, ask Redis for live workers anywhere in the deployment."
    )

    def add_arguments(self, parser):
        parser.add_argument("--pid", type=int, help="the worker process to check")
        parser.add_argument(
            "--anywhere",
            action="store_true",
            help="any worker of the deployment, from the heartbeats in Redis",
        )

    def handle(self, *args, pid=None, anywhere=False, **options):
        max_age = heartbeat_max_age()
        if anywhere:
            import django_rq

            try:
                beats = redis_heartbeats(django_rq.get_connection("ingest"))
            except RedisError as error:
                raise CommandError(f"cannot tell: Redis unreachable ({error})") from None
            where = "in the deployment"
        else:
            beats = local_heartbeats(pid=pid)
            where = f"with pid {pid}" if pid is not None else "on this host"
        if not beats:
            raise CommandError(f"no worker {where} sent a heartbeat in the last {max_age:.0f} s")
        for beat in beats:
            self.stdout.write(
                f"alive: worker {beat.name} (pid {beat.pid} on {beat.hostname}, "
                f"queues {','.join(beat.queues)}), last heartbeat {beat.age():.1f} s ago"
            )
