class IngestError(Exception):
    """Base of the errors the ingest services raise on purpose."""


class FeedSourceExists(IngestError):
    def __init__(self, name: str):
        self.name = name
        super().__init__(f"a feed source named {name!r} already exists")


class FeedSourceInvalid(IngestError, ValueError):
    """A feed source that cannot be made as asked (no name, ...)."""


class NoteRequired(IngestError, ValueError):
    """A decision on dead letters that must say why (discarding them)."""


class FeedSourceNotAllowed(IngestError):
    """The user may not manage feed sources (views answer 403)."""

    def __init__(self, doing: str):
        super().__init__(f"you do not have permission to {doing}")
