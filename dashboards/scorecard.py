"""The courier scorecard: the `by=courier` breakdown of a scope and window, sortable by any of
its columns. Numbers come only from `kpis.reads` (the /api/kpis contract)."""

from dataclasses import dataclass

from django.utils import timezone

from kpis.reads import kpis_compute

DEFAULT_WINDOW = "24h"
# (key of a breakdown entry, column heading, format of `kpi_format`)
COLUMNS = (
    ("key", "Courier", "text"),
    ("deliveries", "Deliveries", "integer"),
    ("order_accuracy", "Order accuracy", "percent"),
    ("cost_per_shipment", "Cost per shipment", "money"),
    ("fulfillment_p50_s", "Fulfillment p50", "duration"),
    ("fulfillment_p90_s", "Fulfillment p90", "duration"),
)
SORT_KEYS = tuple(key for key, _, _ in COLUMNS)
DEFAULT_SORT = ("deliveries", "desc")  # the API's own order


class UnknownSort(ValueError):
    def __init__(self, sort: str, direction: str):
        super().__init__(
            f"sort must be one of {', '.join(SORT_KEYS)} and dir asc or desc; "
            f"got {sort!r} {direction!r}"
        )


@dataclass(frozen=True, slots=True)
class Sorting:
    key: str
    direction: str  # "asc" or "desc"

    @classmethod
    def parse(cls, sort: str | None, direction: str | None) -> "Sorting":
        """The sorting asked for (default: deliveries, most first); UnknownSort if it is not
        one of the columns and asc/desc."""
        if not sort and not direction:
            return cls(*DEFAULT_SORT)
        sort = sort or DEFAULT_SORT[0]
        direction = direction or ("asc" if sort == "key" else "desc")
        if sort not in SORT_KEYS or direction not in ("asc", "desc"):
            raise UnknownSort(sort, direction)
        return cls(sort, direction)

    def rows_sorted(self, entries: list[dict]) -> list[dict]:
        """Sorted by the column, empty values (no known fulfillment time) last either way,
        then by courier."""
        by_courier = sorted(entries, key=lambda entry: entry["key"])
        present = [entry for entry in by_courier if entry[self.key] is not None]
        empty = [entry for entry in by_courier if entry[self.key] is None]
        present.sort(key=lambda entry: entry[self.key], reverse=self.direction == "desc")
        return present + empty

    def toggled(self, key: str) -> str:
        """The direction a click on column `key` asks for: the other one on the sorted column,
        else the column's natural first (couriers A to Z, figures highest first)."""
        if key == self.key:
            return "asc" if self.direction == "desc" else "desc"
        return "asc" if key == "key" else "desc"


def scorecard_build(*, site: str | None, window: str, sorting: Sorting) -> dict:
    """The scorecard of one site (code) or all sites: its rows and what the page says of them.
    Raises UnknownSite or UnknownWindow."""
    now = timezone.now()
    kpis = kpis_compute(site=site, window=window, now=now, by="courier")
    return {
        "rows": sorting.rows_sorted(kpis["breakdown"]),
        "totals": kpis,
        "columns": [
            {
                "key": key,
                "heading": heading,
                "format": value_format,
                "sorted": sorting.direction if key == sorting.key else None,
                "next_direction": sorting.toggled(key),
            }
            for key, heading, value_format in COLUMNS
        ],
        "sorting": sorting,
        "as_of": now,
    }
