"""Text from peers (a reader's verdict, an mdoc's docType and element names, a server's
error body) on the terminal: control characters escaped, so that no escape sequence a
peer chose acts on the terminal, and never read as rich markup, so that ``[link=...]`` or
``[red]`` in it stays text."""

from __future__ import annotations

from rich.markup import escape
from rich.text import Text

from reader.text import printable


def cell(value: object) -> Text:
    """A table cell or title holding a peer's text."""
    return Text(printable(str(value)))


def markup_safe(value: object) -> str:
    """A peer's text to embed in a markup string (``f"[red]{markup_safe(msg)}[/]"``)."""
    return escape(printable(str(value)))
