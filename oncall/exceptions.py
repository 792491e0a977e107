"""Errors of the on-call services. `str(error)` is shown to people: keep it plain."""


class OncallError(Exception):
    pass


class OncallNotAllowed(OncallError):
    """The user lacks the permission (views answer 403)."""


class AlertTransitionRefused(OncallError):
    pass


class StillBreaching(AlertTransitionRefused):
    """Resolving by hand while the rule still breaches: it would reopen at the next evaluation."""

    def __init__(self, message: str, *, value):
        super().__init__(message)
        self.value = value


class RunbookInvalid(OncallError):
    pass


class NoteRequired(AlertTransitionRefused):
    """Acknowledging without a note: the next engineer would not know who does what."""


class SilenceInvalid(OncallError):
    pass
