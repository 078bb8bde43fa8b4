"""Writing user text safely into the markdown and HTML channels.

Plain text is left as it is (titles are made one line by `one_line`). In markdown, user text
(experiment, metric, variation and check names, error messages) is backslash-escaped by
`escape_markdown` where CommonMark would read it as markup: backslash, backtick, `*`, `[`,
`]`, `<`, `>`, `~`, `_` at a word's edge (not inside `exp_checkout`), `&` starting an entity,
and block markers where the text starts a line. In HTML it goes through `html.escape`
(`escape_html`). Only http(s) URLs are linked (`safe_url`), percent-encoded so they cannot
break out of a link. `html_page` and `html_table` are the email's frame and fact table,
inline styles only.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from urllib.parse import quote, urlsplit

from .levels import Level


def one_line(text: str) -> str:
    """`text` with every run of whitespace, newlines included, as one space."""
    return " ".join(text.split())


_MD_INLINE = re.compile(r"[\\`*\[\]<>~]|(?<![^\W_])_|_(?![^\W_])|&(?=#?[0-9A-Za-z]+;)")
"""What CommonMark could read as markup: `_` only where it can start or end emphasis (not
inside a word: `exp_checkout` stays as it is), `&` only where it starts an entity."""
_MD_BLOCK_START = re.compile(r"^(?:([#+=-])|(\d+)([.)]))")
_URL_SAFE = ":/?#[]@!$&'()*+,;=%"


def escape_markdown(text: str, *, line_start: bool = False) -> str:
    """User text as literal CommonMark; `line_start` when it begins a line (or list item)."""
    escaped = _MD_INLINE.sub(lambda m: "\\" + m.group(0), one_line(text))
    if line_start:
        escaped = _MD_BLOCK_START.sub(
            lambda m: f"\\{m.group(1)}" if m.group(1) else f"{m.group(2)}\\{m.group(3)}", escaped
        )
    return escaped


def markdown_link(label: str, url: str | None) -> str:
    """`label` linked to `url` (a `safe_url`), or just escaped when there is none."""
    return f"[{escape_markdown(label)}](<{url}>)" if url else escape_markdown(label)


def escape_html(text: str) -> str:
    """User text as literal HTML, quotes included (safe inside attributes)."""
    return html.escape(text, quote=True)


def html_link(label: str, url: str | None, style: str = "color:#0969da") -> str:
    """`label` linked to `url` (a `safe_url`) with inline `style`, or just escaped."""
    return (
        f'<a href="{escape_html(url)}" style="{style}">{escape_html(label)}</a>'
        if url
        else escape_html(label)
    )


def safe_url(value: object) -> str | None:
    """An http(s) URL, percent-encoded where it could break out of a link; else None."""
    if not isinstance(value, str):
        return None
    try:
        parts = urlsplit(value.strip())
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return quote(value.strip(), safe=_URL_SAFE)


COLOURS = {"failure": "#cf222e", "warning": "#9a6700", "success": "#1a7f37", "info": "#0969da"}
_HTML_BOX = (
    "font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;font-size:14px;"
    "line-height:1.5;color:#1f2328;max-width:640px"
)
_HTML_NOTICE = "margin:0 0 12px;padding:8px 12px;background:#fff8c5;border:1px solid #d4a72c"
_HTML_LEVEL = "margin:0;font-size:12px;font-weight:bold;letter-spacing:1px"
_HTML_H2 = "margin:0 0 12px;font-size:18px;padding-left:8px"
_HTML_TH = (
    "text-align:left;vertical-align:top;padding:4px 16px 4px 0;color:#59636e;"
    "font-weight:normal;white-space:nowrap"
)
_HTML_SMALL = "margin:16px 0 0;font-size:12px;color:#59636e"
HTML_BUTTON = (
    "display:inline-block;padding:8px 16px;background:#0969da;color:#ffffff;"
    "text-decoration:none;border-radius:6px;font-weight:bold"
)


def html_page(
    *,
    level: Level,
    notify_type: str,
    notices: Sequence[str],
    heading: str,
    content: Sequence[str],
    footer: str,
) -> str:
    """The email frame around `content`; `heading`, `content` and `footer` are HTML."""
    colour = COLOURS[notify_type]
    return "\n".join(
        [
            f'<div style="{_HTML_BOX}">',
            *(f'<p style="{_HTML_NOTICE}">{escape_html(n)}</p>' for n in notices),
            f'<p style="{_HTML_LEVEL};color:{colour}">{level.value.upper()}</p>',
            f'<h2 style="{_HTML_H2};border-left:4px solid {colour}">{heading}</h2>',
            *content,
            f'<p style="{_HTML_SMALL}">{footer}</p>',
            "</div>",
        ]
    )


def html_table(rows: Sequence[tuple[str, str, str | None]]) -> str:
    """Label, value and the URL the value links to (None: not linked) as a two-column table."""
    cells = "".join(
        f'<tr><th style="{_HTML_TH}">{escape_html(label)}:</th><td style="padding:4px 0">'
        f"{html_link(value, url)}</td></tr>\n"
        for label, value, url in rows
    )
    return f'<table style="border-collapse:collapse;margin:0 0 12px">\n{cells}</table>'
