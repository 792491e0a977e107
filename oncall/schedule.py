"""The scheduled alert evaluation: a chain of RQ jobs (core/scheduling.py says how a
chain stays single and alive).

- `alerts_schedule_ensure` restarts the chain when the owner job no longer exists (Redis
  flushed, job lost). It is called by every event-driven evaluation job, by the console page,
  by `load_runbooks` (so `make run` / `load_demo` start it) and by every worker's heartbeat
  (`ingest.signals.worker_beat`, every few seconds), so the chain restarts by itself once a
  Redis that lost its data is back.
"""

import os

from core.scheduling import ScheduledChain

SCHEDULED_JOB_KEY = "oncall:alerts:scheduled-job"
ENSURE_LOCK_KEY = "oncall:alerts:schedule-ensure-lock"


def evaluation_interval() -> int:
    return max(1, int(os.environ.get("ALERTS_EVALUATION_INTERVAL", "60")))


ALERTS_CHAIN = ScheduledChain(
    name="alert evaluation",
    job="oncall.jobs.alerts_scheduled_evaluation_job",
    owner_key=SCHEDULED_JOB_KEY,
    lock_key=ENSURE_LOCK_KEY,
    interval=evaluation_interval,
    job_timeout=lambda: evaluation_interval() * 5,
)


def alerts_schedule_ensure() -> bool:
    """Start the chain if no live job owns it; return True if it had to be started."""
    return bool(ALERTS_CHAIN.ensure())


def scheduled_run_claim() -> bool:
    """In a scheduled job: if this job owns the chain, schedule its successor and return True."""
    return ALERTS_CHAIN.claim()
