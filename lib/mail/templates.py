"""Alert templates with lfd-style [placeholder] fields.

A template is a text file: header lines (From:, To:, Subject:), a blank line, then the
body, exactly as csf's alert templates are written, so users can bring theirs. An optional
HTML body sits beside it (<name>.html, body only); its placeholders are HTML-escaped.
Unknown placeholders are left as they are, as lfd does. A field may be a list of lines.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..errors import DataError, NoInputError

PLACEHOLDER = re.compile(r"\[([a-zA-Z0-9_]+)\]")
# fields whose value is already HTML (tables, images) and must not be escaped
RAW_HTML_SUFFIX = "_html"


@dataclass
class Rendered:
    subject: str
    sender: str
    to: str
    text: str
    html: str | None


def _shipped(name: str) -> str | None:
    try:
        return resources.files("nightwarden.reports").joinpath("templates", name).read_text("utf-8")
    except (FileNotFoundError, OSError):
        return None


def load_template(name: str, user_dir: str = "", suffix: str = ".txt") -> tuple[str, str] | None:
    """(text, where) of a template: the user's directory first, then the shipped one."""
    filename = name + suffix
    if user_dir:
        path = Path(user_dir) / filename
        if path.is_file():
            try:
                return path.read_text("utf-8"), str(path)
            except (OSError, UnicodeDecodeError) as e:
                raise DataError(f"{path}: cannot read template: {e}") from None
    text = _shipped(filename)
    return (text, f"nightwarden.reports/templates/{filename}") if text is not None else None


def _as_text(value) -> str:
    if isinstance(value, (list, tuple)):
        return "\n".join(str(v) for v in value)
    return "" if value is None else str(value)


def fill(template: str, fields: dict, escape: bool = False) -> str:
    def sub(match: re.Match) -> str:
        key = match.group(1)
        if escape and key + RAW_HTML_SUFFIX in fields:
            return _as_text(fields[key + RAW_HTML_SUFFIX])
        if key not in fields:
            return match.group(0)
        value = _as_text(fields[key])
        return html.escape(value) if escape else value

    return PLACEHOLDER.sub(sub, template)


def split_headers(text: str, where: str) -> tuple[dict[str, str], str]:
    headers: dict[str, str] = {}
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            return headers, "\n".join(lines[i + 1 :]).rstrip("\n") + "\n"
        key, sep, value = line.partition(":")
        if not sep or key.strip().lower() not in ("from", "to", "subject"):
            raise DataError(f"{where}:{i + 1}: expected a From:, To: or Subject: header line")
        headers[key.strip().lower()] = value.strip()
    raise DataError(f"{where}: no blank line between the headers and the body")


def render(name: str, fields: dict, user_dir: str = "", want_html: bool = True) -> Rendered:
    found = load_template(name, user_dir)
    if found is None:
        raise NoInputError(f"mail template {name!r} not found")
    text, where = found
    headers, body = split_headers(text, where)
    html_body = None
    if want_html:
        html_found = load_template(name, user_dir, ".html")
        if html_found is not None:
            html_body = fill(html_found[0], fields, escape=True)
        else:
            html_body = "<html><body><pre>" + html.escape(fill(body, fields)) + "</pre></body></html>\n"
    return Rendered(
        subject=" ".join(fill(headers.get("subject", name), fields).split()),
        sender=fill(headers.get("from", ""), fields),
        to=fill(headers.get("to", ""), fields),
        text=fill(body, fields),
        html=html_body,
    )
