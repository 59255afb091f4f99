"""HTML rendering for the portal: `string.Template` files from ``templates/``, every value escaped
unless it is `Markup` (HTML the portal built itself from escaped parts)."""

from __future__ import annotations

import functools
import html
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from string import Template

TEMPLATES = Path(__file__).with_name("templates")


class Markup(str):
    """A string of HTML that is already safe (built by `render`, `tag` or `join`)."""


def esc(value: object) -> Markup:
    if isinstance(value, Markup):
        return value
    return Markup(html.escape("" if value is None else str(value), quote=True))


@functools.cache
def _template(name: str) -> Template:
    return Template((TEMPLATES / name).read_text(encoding="utf-8"))


def render(name: str, **values: object) -> Markup:
    """Fills ``templates/<name>``; a placeholder without a value is an error (KeyError)."""
    return Markup(_template(name).substitute({k: esc(v) for k, v in values.items()}))


def join(parts: Iterable[object], sep: str = "") -> Markup:
    return Markup(sep.join(esc(p) for p in parts))


def tag(name: str, content: object = "", /, **attrs: object) -> Markup:
    """``<name attr="…">content</name>``; attribute names use ``_`` for ``-`` (and ``class_``)."""
    rendered = "".join(
        f' {k.rstrip("_").replace("_", "-")}' + ("" if v is True else f'="{esc(v)}"')
        for k, v in attrs.items() if v is not None and v is not False
    )
    return Markup(f"<{name}{rendered}>{esc(content)}</{name}>")


def alert(message: str) -> Markup:
    """An error paragraph, announced by screen readers; nothing for no message."""
    return tag("p", message, class_="error", role="alert") if message else Markup("")


def tabs(active: str, base: str, available: Iterable[tuple[str, str]]) -> Markup:
    """One tab per authentication method (key, label): a link to ``base?methode=key``."""
    return join(tag("a", label, href=f"{base}?methode={key}", class_="tab active"
                    if key == active else "tab", id=f"tab-{key}",
                    aria_current="page" if key == active else None)
                for key, label in available)


def group_digits(digits: str) -> str:
    """'12345678' -> '1234 5678': as the person reads a challenge off the page."""
    return " ".join(digits[i:i + 4] for i in range(0, len(digits), 4))


def utc_time(when: datetime | None) -> str:
    if when is None:
        return "-"
    return when.astimezone(UTC).strftime("%H:%M:%S UTC")
