"""Template filters of the tiles: compact numbers, changes, dates. How a KPI value reads is
`kpis.formatting`'s (on-call's measures read the same way)."""

from datetime import UTC, datetime

from django import template
from django.utils.html import format_html, format_html_join

from kpis.formatting import NONE_SHOWN, duration_format, kpi_format
from kpis.formatting import value_number as _number

register = template.Library()

kpi_format = register.filter("kpi_format", kpi_format)


COMPACT_FROM = 10_000
COMPACT_STEPS = ((1e3, "k"), (1e6, "M"), (1e9, "B"), (1e12, "T"))


def compact_number(number: float) -> str | None:
    """234110 -> "234.1k", 1234567 -> "1.2M": short enough for any tile; None below 10,000."""
    if abs(number) < COMPACT_FROM:
        return None
    # The smallest unit that keeps it under 1000 once rounded (999,950 is "1.0M", not "1000.0k").
    for size, suffix in COMPACT_STEPS:
        shown = f"{number / size:.1f}"
        if abs(float(shown)) < 1000 or suffix == "T":
            return f"{shown}{suffix}"
    return None


@register.filter
def kpi_compact(value, value_format: str) -> str:
    """A tile's value, short enough to fit: large numbers as 234.1k / 1.2M (money without its
    currency, which the tile shows apart). The exact figure is kpi_format's."""
    if value_format in ("integer", "decimal", "money", "amount"):
        number = _number(value)
        if number is not None:
            compact = compact_number(float(number))
            if compact is not None:
                return compact
            if value_format == "money":
                value_format = "amount"
    return kpi_format(value, value_format)


@register.filter
def kpi_change(change, value_format: str) -> str:
    """A tile's change against the previous window, signed: "+3", "-1.2 pts", "+1.5 min"."""
    number = _number(change)
    if number is None:
        return ""
    number = float(number)
    sign = "+" if number > 0 else "-" if number < 0 else "±"
    size = abs(number)
    if value_format in ("percent", "skew"):
        return f"{sign}{size * 100:.1f} pts"
    if value_format == "duration":
        return sign + duration_format(size)
    shown = compact_number(size)
    if shown is None:
        shown = f"{int(size):,}" if value_format == "integer" else f"{size:,.2f}"
    return sign + shown


@register.filter
def seconds_ago(value) -> str:
    """A feed's freshness in seconds, as "12 s ago"; "never" when nothing was applied yet."""
    if _number(value) is None:
        return "never"
    return f"{duration_format(value)} ago"


@register.filter
def local_time(moment) -> str:
    """A moment for people: `<time>` reading "7 Dec 2026, 16:05:12 UTC", which
    static/js/local_times.js rewrites in the reader's own time zone with how long ago it was."""
    if isinstance(moment, str):
        try:
            moment = datetime.fromisoformat(moment)
        except ValueError:
            return moment
    if not isinstance(moment, datetime):
        return NONE_SHOWN
    utc = moment.astimezone(UTC)
    return format_html(
        '<time datetime="{}" data-local>{} UTC</time>',
        utc.isoformat(),
        utc.strftime("%-d %b %Y, %H:%M:%S"),
    )


SPARK_WIDTH, SPARK_HEIGHT, SPARK_MARGIN = 100, 24, 2


def sparkline_segments(values) -> list[str]:
    """The polylines' points ("x,y x,y ...") of a sparkline in a 100 x 24 box, highest value at
    the top; a None (a bucket without a value) breaks the line. Empty when fewer than two points
    have a value (no trend to draw)."""
    numbers = [float(value) for value in values if _number(value) is not None]
    if len(numbers) < 2:
        return []
    low, high = min(numbers), max(numbers)
    usable = SPARK_HEIGHT - 2 * SPARK_MARGIN
    step = SPARK_WIDTH / (len(values) - 1)
    segments, current = [], []
    for index, value in enumerate(values):
        if _number(value) is None:
            if current:
                segments.append(current)
            current = []
            continue
        share = 0.5 if high == low else (float(value) - low) / (high - low)
        current.append(f"{index * step:.2f},{SPARK_MARGIN + (1 - share) * usable:.2f}")
    if current:
        segments.append(current)
    # A lone point between gaps is drawn as a dot-long line, so it still shows.
    return [" ".join(points * 2 if len(points) == 1 else points) for points in segments]


@register.filter
def sparkline(values) -> str:
    """A tile's trend as an inline SVG (no script, no inline style: the CSP allows it); empty
    when there is no trend to draw."""
    segments = sparkline_segments(values or [])
    if not segments:
        return ""
    lines = format_html_join("", '<polyline points="{}"/>', ((points,) for points in segments))
    return format_html(
        '<svg class="spark" viewBox="0 0 {} {}" preserveAspectRatio="none" aria-hidden="true" '
        'focusable="false" data-spark-points="{}">{}</svg>',
        SPARK_WIDTH,
        SPARK_HEIGHT,
        len(values),
        lines,
    )
