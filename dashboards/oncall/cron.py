"""The scheduled alert evaluation, run by RQ's cron scheduler (Procfile `clock` line):

    python manage.py rqcron dashboards.oncall.cron

Interval from ALERTS_EVALUATION_INTERVAL (seconds, default 60).
"""

import os

from rq import cron

from dashboards.oncall.jobs import alerts_scheduled_evaluation_job

EVALUATION_INTERVAL = int(os.environ.get("ALERTS_EVALUATION_INTERVAL", "60"))

cron.register(
    alerts_scheduled_evaluation_job,
    queue_name="default",
    interval=EVALUATION_INTERVAL,
    job_timeout=EVALUATION_INTERVAL * 5,
    result_ttl=EVALUATION_INTERVAL * 2,
)
