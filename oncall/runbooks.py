"""Runbook Markdown: sanitised rendering and the shipped files' front matter."""

from dataclasses import dataclass
from datetime import date

import markdown
import nh3
from django.utils.safestring import SafeString, mark_safe

from oncall.exceptions import RunbookInvalid
from oncall.models import AlertKind, DiagnosticName

MARKDOWN_EXTENSIONS = ["fenced_code", "tables", "sane_lists"]
# nh3's defaults drop <script>, <style>, event handler attributes and javascript: URLs; we
# narrow URL schemes further and mark every link as leaving the site.
ALLOWED_URL_SCHEMES = {"http", "https", "mailto"}


def markdown_render_safe(text: str) -> SafeString:
    """Render Markdown to HTML with everything executable removed."""
    html = markdown.markdown(text, extensions=MARKDOWN_EXTENSIONS, output_format="html")
    return mark_safe(  # noqa: S308 (cleaned by nh3 just above)
        nh3.clean(html, url_schemes=ALLOWED_URL_SCHEMES, link_rel="noopener noreferrer")
    )


@dataclass(frozen=True)
class RunbookFile:
    slug: str
    title: str
    owner: str
    last_reviewed: date
    alert_kinds: list[str]
    diagnostics: list[str]
    body: str


def _names(value: str, allowed, field: str) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in allowed]
    if unknown:
        raise RunbookInvalid(f"{field}: unknown {', '.join(unknown)}")
    return names


def runbook_file_parse(text: str, *, slug: str) -> RunbookFile:
    """Parse `---`-delimited `key: value` front matter, then the Markdown body."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---" or "---" not in (line.strip() for line in lines[1:]):
        raise RunbookInvalid(f"{slug}: the file must start with front matter between --- lines")
    end = next(i for i, line in enumerate(lines[1:], start=1) if line.strip() == "---")
    meta = {}
    for line in lines[1:end]:
        key, sep, value = line.partition(":")
        if not sep:
            raise RunbookInvalid(f"{slug}: front matter line {line!r} is not 'key: value'")
        meta[key.strip()] = value.strip()
    missing = {"title", "owner", "last_reviewed"} - meta.keys()
    if missing:
        raise RunbookInvalid(f"{slug}: front matter lacks {', '.join(sorted(missing))}")
    try:
        reviewed = date.fromisoformat(meta["last_reviewed"])
    except ValueError:
        raise RunbookInvalid(f"{slug}: last_reviewed must be YYYY-MM-DD") from None
    return RunbookFile(
        slug=slug,
        title=meta["title"],
        owner=meta["owner"],
        last_reviewed=reviewed,
        alert_kinds=_names(meta.get("alert_kinds", ""), AlertKind.values, "alert_kinds"),
        diagnostics=_names(meta.get("diagnostics", ""), DiagnosticName.values, "diagnostics"),
        body="\n".join(lines[end + 1 :]).strip() + "\n",
    )
