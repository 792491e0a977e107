"""Domain errors of the stock ledger. Callers show `str(error)` to people: keep it plain."""


class StockError(Exception):
    """Base of every error the stock services raise on purpose."""


class UnknownSite(StockError):
    def __init__(self, codes):
        self.codes = sorted(codes)
        super().__init__(f"unknown site code(s): {', '.join(self.codes)}")


class UnknownSku(StockError):
    def __init__(self, codes):
        self.codes = sorted(codes)
        super().__init__(f"unknown SKU code(s): {', '.join(self.codes)}")


class InvalidMovement(StockError):
    """A movement request that can never be applied (bad kind, negative count, ...)."""


class CatalogImportNotAllowed(StockError):
    def __init__(self, username: str):
        super().__init__(
            f"{username} may not import a catalog: it needs permission to add and change sites "
            "and SKUs"
        )


class CatalogError(Exception):
    """A catalog file with problems; `problems` lists each one with its file, line and column."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))
