"""A real worker process that dies the way the out-of-memory killer kills one: SIGKILL, while
applying a batch holding the event named by `DIE_ON_EVENT_ID`.

Test-only: `python -m tests.ingest.dying_worker rqworker ingest ...` runs the project's own
`manage.py` command after wrapping `ingest.processing.events_apply`, in this process only.
Nothing in the product knows of it.
"""

import os
import signal
import sys

import django


def main() -> None:
    django.setup()
    from django.core.management import execute_from_command_line

    from ingest import processing

    fatal_event_id = os.environ["DIE_ON_EVENT_ID"]
    events_apply = processing.events_apply

    def events_apply_or_die(items):
        if any(
            isinstance(item.raw, dict) and item.raw.get("event_id") == fatal_event_id
            for item in items
        ):
            # Inside the batch's transaction, as a process killed for its memory would be.
            os.kill(os.getpid(), signal.SIGKILL)
        return events_apply(items)

    processing.events_apply = events_apply_or_die
    execute_from_command_line(["manage.py", *sys.argv[1:]])


if __name__ == "__main__":
    main()
