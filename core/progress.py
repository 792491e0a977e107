"""A progress bar for long management commands: redrawn in place on a terminal, a line now and
then in a log (a cron job's or a container's output)."""

import time

BAR_WIDTH = 30
LOG_EVERY_SECONDS = 10


class ProgressBar:
    """Call with (step, done, total) as work advances; prints the step's bar."""

    def __init__(self, stdout):
        self.stdout = stdout
        self.interactive = stdout.isatty() if hasattr(stdout, "isatty") else False
        self._logged_at: dict[str, float] = {}

    def __call__(self, step: str, done: int, total: int) -> None:
        fraction = 1.0 if total == 0 else min(1.0, done / total)
        filled = int(BAR_WIDTH * fraction)
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        line = f"{step:<13} [{bar}] {fraction:6.1%} {done:>10,}/{total:,}"
        if self.interactive:
            self.stdout.write("\r" + line, ending="\n" if fraction >= 1.0 else "")
            self.stdout.flush()
            return
        now = time.monotonic()
        if fraction >= 1.0 or now - self._logged_at.get(step, 0) >= LOG_EVERY_SECONDS:
            self._logged_at[step] = now
            self.stdout.write(line)
