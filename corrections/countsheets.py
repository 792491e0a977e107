"""Parse and check a count sheet (CSV: site, sku, counted_qty), reporting every bad line."""

import csv
import io
import re
from dataclasses import dataclass

from core.limits import MAX_QTY
from corrections.exceptions import CountSheetInvalid
from ledger.models import Site, Sku
from ledger.selectors import ids_by_code

REQUIRED_COLUMNS = ("site", "sku", "counted_qty")
TEMPLATE_CSV = "site,sku,counted_qty\r\n"


def column_name(header: str) -> str:
    """A header as the sheet means it: "Counted Qty", "counted-qty" -> counted_qty."""
    return re.sub(r"[\s\-]+", "_", header.strip().lower())


MAX_LINES = 50_000


@dataclass(frozen=True, slots=True)
class CountRow:
    line_number: int
    site_id: int
    sku_id: int
    counted_qty: int


def count_sheet_parse(content: bytes) -> list[CountRow]:
    """Return the rows of a valid sheet, or raise CountSheetInvalid listing every problem."""
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise CountSheetInvalid([(None, f"the file is not UTF-8 text ({error.reason})")]) from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None:
        raise CountSheetInvalid(
            [(None, "the file is empty: expected a header site,sku,counted_qty")]
        )
    columns = [column_name(name) for name in header]
    missing = [name for name in REQUIRED_COLUMNS if name not in columns]
    if missing:
        raise CountSheetInvalid(
            [
                (
                    1,
                    f"the header lacks {', '.join(missing)} (expected site,sku,counted_qty, in any "
                    "case, with spaces or underscores)",
                )
            ]
        )
    position = {name: columns.index(name) for name in REQUIRED_COLUMNS}

    raw_rows: list[tuple[int, str, str, str]] = []
    problems: list[tuple[int | None, str]] = []
    for line_number, fields in enumerate(reader, start=2):
        if not any(field.strip() for field in fields):
            continue  # blank lines are harmless
        if len(raw_rows) >= MAX_LINES:
            problems.append((line_number, f"too many lines: at most {MAX_LINES} per sheet"))
            break
        if len(fields) < len(columns):
            problems.append((line_number, f"expected {len(columns)} fields, found {len(fields)}"))
            continue
        site, sku, qty = (fields[position[name]].strip() for name in REQUIRED_COLUMNS)
        raw_rows.append((line_number, site, sku, qty))
    if not raw_rows and not problems:
        problems.append((None, "the sheet has a header but no lines"))

    site_ids = ids_by_code(Site, {r[1] for r in raw_rows})
    sku_ids = ids_by_code(Sku, {r[2] for r in raw_rows})
    rows: list[CountRow] = []
    first_line_of: dict[tuple[str, str], int] = {}
    for line_number, site, sku, qty in raw_rows:
        line_problems = []
        if not site:
            line_problems.append("site is empty")
        elif site not in site_ids:
            line_problems.append(f"unknown site {site!r}")
        if not sku:
            line_problems.append("sku is empty")
        elif sku not in sku_ids:
            line_problems.append(f"unknown SKU {sku!r}")
        try:
            counted = int(qty)
        except ValueError:
            line_problems.append(f"counted_qty {qty[:40]!r} is not a whole number")
        else:
            if counted < 0:
                line_problems.append(f"counted_qty {qty[:40]} is negative")
            elif counted > MAX_QTY:
                line_problems.append(f"counted_qty {qty[:40]} is more than {MAX_QTY}")
        if (site, sku) in first_line_of:
            line_problems.append(
                f"{site}/{sku} is already counted on line {first_line_of[(site, sku)]}"
            )
        else:
            first_line_of[(site, sku)] = line_number
        if line_problems:
            problems.append((line_number, "; ".join(line_problems)))
        else:
            rows.append(CountRow(line_number, site_ids[site], sku_ids[sku], counted))
    if problems:
        # By line, the file's own problems (no line) first: the order a clerk fixes them in.
        problems.sort(key=lambda problem: (problem[0] is not None, problem[0] or 0))
        raise CountSheetInvalid(problems)
    return rows
