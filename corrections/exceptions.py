"""Errors of the corrections services. `str(error)` is shown to people: keep it plain."""


class CorrectionError(Exception):
    """Base of every error the corrections services raise on purpose."""


class CorrectionNotAllowed(CorrectionError):
    """The user lacks the permission for this step (views answer 403)."""


class InvalidCorrection(CorrectionError):
    pass


class SelfApprovalRefused(CorrectionNotAllowed):
    def __init__(self):
        super().__init__("a correction must be approved by someone other than who requested it")


class CorrectionNotPending(CorrectionError):
    def __init__(self, correction_id: int, status: str):
        super().__init__(f"correction #{correction_id} is {status}, not waiting for approval")


class CorrectionNotReversible(CorrectionError):
    pass


class CountSheetInvalid(CorrectionError):
    """A count sheet with problems; `problems` lists (line number or None, message)."""

    def __init__(self, problems: list[tuple[int | None, str]]):
        self.problems = problems
        super().__init__(
            "; ".join(f"line {line}: {msg}" if line else msg for line, msg in problems)
        )


class CountSheetAlreadyApplied(CorrectionError):
    def __init__(self, sheet_id: int):
        super().__init__(f"count sheet #{sheet_id} is already applied")


class CountSheetNotPending(CorrectionError):
    def __init__(self, sheet_id: int, status: str):
        super().__init__(f"count sheet #{sheet_id} is {status}, not waiting for approval")


class CountSheetNotPreviewed(CorrectionError):
    def __init__(self, sheet_id: int, status: str, doing: str):
        super().__init__(
            f"count sheet #{sheet_id} is {status}: only a previewed one can be {doing}"
        )
