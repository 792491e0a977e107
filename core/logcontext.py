"""The batch a job is applying, on every log line written meanwhile: `batch_id` on each log
record (None outside such a job), as `request_id` is on a request's lines."""

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

batch_id: ContextVar[str | None] = ContextVar("batch_id", default=None)


@contextmanager
def batch_logged(value) -> Iterator[None]:
    """Every line logged inside the block, in this thread and the tasks it starts, names
    the batch."""
    token = batch_id.set(str(value))
    try:
        yield
    finally:
        batch_id.reset(token)


class BatchIdFilter:
    def filter(self, record) -> bool:
        record.batch_id = batch_id.get()
        return True
