"""Errors of the on-call services. `str(error)` is shown to people: keep it plain."""


class OncallError(Exception):
    pass


class OncallNotAllowed(OncallError):
    """The user lacks the permission (views answer 403)."""


class AlertTransitionRefused(OncallError):
    pass


class RunbookInvalid(OncallError):
    pass


class NoteRequired(AlertTransitionRefused):
    """Acknowledging without a note: the next engineer would not know who does what."""


class SilenceInvalid(OncallError):
    pass
