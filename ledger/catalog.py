"""Parse catalog CSV files (sites and SKUs) into checked rows, or say exactly what is wrong.

Sites: `code,name[,timezone]`. SKUs: `code,name,unit_cost[,reorder_point]`. A file with any
problem yields a CatalogError listing every problem by file, line and column; nothing is written
(writing is `services.catalog_import`, called only with clean rows).
"""

import csv
import io
import zoneinfo
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError
from django.core.validators import validate_slug

from ledger.exceptions import CatalogError
from ledger.models import code_validator

MAX_CATALOG_BYTES = 20 * 1024 * 1024
SITE_COLUMNS = ("code", "name", "timezone")
SITE_REQUIRED = ("code", "name")
SKU_COLUMNS = ("code", "name", "unit_cost", "reorder_point")
SKU_REQUIRED = ("code", "name", "unit_cost")
MAX_UNIT_COST = Decimal("9999999999.9999")


@dataclass(frozen=True)
class SiteRow:
    code: str
    name: str
    timezone: str | None


@dataclass(frozen=True)
class SkuRow:
    code: str
    name: str
    unit_cost: Decimal
    reorder_point: int | None


def _decode(data: bytes, filename: str) -> str:
    if len(data) > MAX_CATALOG_BYTES:
        raise CatalogError([f"{filename}: larger than {MAX_CATALOG_BYTES // 1024 // 1024} MiB"])
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise CatalogError([f"{filename} line {line}: not valid UTF-8 text"]) from None


def _read_rows(text: str, filename: str, columns: tuple, required: tuple, problems: list):
    """Yield (line number, {column: stripped value}) for each data row."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
    except csv.Error as error:
        problems.append(f"{filename} line 1: unreadable CSV ({error})")
        return
    if header is None:
        problems.append(f"{filename}: the file is empty; expected a header row {','.join(columns)}")
        return
    header = [name.strip().lower() for name in header]
    unknown = [name for name in header if name not in columns]
    missing = [name for name in required if name not in header]
    if unknown or missing or len(set(header)) != len(header):
        detail = []
        if missing:
            detail.append(f"missing column(s) {', '.join(missing)}")
        if unknown:
            detail.append(f"unknown column(s) {', '.join(unknown)}")
        if len(set(header)) != len(header):
            detail.append("a column is named twice")
        problems.append(
            f"{filename} line 1 (header): {'; '.join(detail)}; expected {','.join(columns)}"
        )
        return
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            problems.append(f"{filename} line {reader.line_num}: unreadable CSV ({error})")
            return
        if not any(value.strip() for value in values):
            continue
        if len(values) < len(header) and all(
            name not in required for name in header[len(values) :]
        ):
            values = values + [""] * (len(header) - len(values))  # optional trailing columns
        if len(values) != len(header):
            problems.append(
                f"{filename} line {reader.line_num}: {len(values)} values for "
                f"{len(header)} columns ({','.join(header)})"
            )
            continue
        yield (
            reader.line_num,
            {name: value.strip() for name, value in zip(header, values, strict=True)},
        )


def _problem(filename: str, line: int, column: str, message: str) -> str:
    return f"{filename} line {line}, column {column}: {message}"


def parse_sites(data: bytes, filename: str = "sites.csv") -> list[SiteRow]:
    problems: list[str] = []
    rows: list[SiteRow] = []
    seen: dict[str, int] = {}
    text = _decode(data, filename)
    for line, row in _read_rows(text, filename, SITE_COLUMNS, SITE_REQUIRED, problems):
        code, name, timezone = row["code"], row["name"], row.get("timezone") or None
        line_problems = []
        try:
            validate_slug(code)
            if len(code) > 64:
                raise ValidationError("too long")
        except ValidationError:
            line_problems.append(
                _problem(
                    filename,
                    line,
                    "code",
                    f"{code!r} is not a valid site code (letters, digits, '-' or '_', at most 64)",
                )
            )
        if code in seen:
            line_problems.append(
                _problem(filename, line, "code", f"{code!r} already given on line {seen[code]}")
            )
        if not name or len(name) > 200:
            line_problems.append(_problem(filename, line, "name", "must be 1 to 200 characters"))
        if timezone:
            try:
                zoneinfo.ZoneInfo(timezone)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                line_problems.append(
                    _problem(filename, line, "timezone", f"{timezone!r} is not a known time zone")
                )
        seen.setdefault(code, line)
        problems.extend(line_problems)
        if not line_problems:
            rows.append(SiteRow(code=code, name=name, timezone=timezone))
    if problems:
        raise CatalogError(problems)
    return rows


def parse_skus(data: bytes, filename: str = "skus.csv") -> list[SkuRow]:
    problems: list[str] = []
    rows: list[SkuRow] = []
    seen: dict[str, int] = {}
    text = _decode(data, filename)
    for line, row in _read_rows(text, filename, SKU_COLUMNS, SKU_REQUIRED, problems):
        code, name = row["code"], row["name"]
        line_problems = []
        try:
            code_validator(code)
            if len(code) > 64:
                raise ValidationError("too long")
        except ValidationError:
            line_problems.append(
                _problem(
                    filename,
                    line,
                    "code",
                    f"{code!r} is not a valid SKU code "
                    "(letters, digits, '.', '_' or '-', at most 64)",
                )
            )
        if code in seen:
            line_problems.append(
                _problem(filename, line, "code", f"{code!r} already given on line {seen[code]}")
            )
        if not name or len(name) > 300:
            line_problems.append(_problem(filename, line, "name", "must be 1 to 300 characters"))
        unit_cost = None
        try:
            unit_cost = Decimal(row["unit_cost"])
            if not unit_cost.is_finite() or unit_cost < 0 or unit_cost > MAX_UNIT_COST:
                raise InvalidOperation
            if unit_cost.as_tuple().exponent < -4:
                raise InvalidOperation
        except InvalidOperation:
            line_problems.append(
                _problem(
                    filename,
                    line,
                    "unit_cost",
                    f"{row['unit_cost']!r} is not a decimal "
                    "amount >= 0 with at most 4 decimal places",
                )
            )
        reorder_point = None
        if row.get("reorder_point"):
            try:
                reorder_point = int(row["reorder_point"])
                if not 0 <= reorder_point <= 2**31 - 1:
                    raise ValueError
            except ValueError:
                line_problems.append(
                    _problem(
                        filename,
                        line,
                        "reorder_point",
                        f"{row['reorder_point']!r} is not a whole number >= 0",
                    )
                )
        seen.setdefault(code, line)
        problems.extend(line_problems)
        if not line_problems:
            rows.append(
                SkuRow(code=code, name=name, unit_cost=unit_cost, reorder_point=reorder_point)
            )
    if problems:
        raise CatalogError(problems)
    return rows
