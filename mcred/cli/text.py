"""Text from peers (a reader's verdict, an mdoc's docType and element names, a server's
error body) on the terminal: control characters escaped, so that no escape sequence a
peer chose acts on the terminal, and never read as rich markup, so that ``[link=...]`` or
``[red]`` in it stays text."""

from __future__ import annotations

import json

from rich.markup import escape
from rich.text import Text

from reader.text import printable


def cell(value: object) -> Text:
    """A table cell or title holding a peer's text."""
    return Text(printable(str(value)))


def markup_safe(value: object) -> str:
    """A peer's text to embed in a markup string (``f"[red]{markup_safe(msg)}[/]"``)."""
    return escape(printable(str(value)))


def listing(rows: list[dict], columns: dict[str, str], as_json: bool) -> None:
    """``rows`` as one JSON array, or as a table of ``columns`` (key: heading); a value
    ``None`` shows as an empty cell."""
    from rich.console import Console
    from rich.table import Table

    if as_json:
        print(json.dumps(rows, ensure_ascii=False))
        return
    table = Table(*columns.values())
    for row in rows:
        table.add_row(*(cell("" if row[k] is None else row[k]) for k in columns))
    Console().print(table)


def fail(message: str, as_json: bool, code: int = 2):  # noqa: ANN201 - a typer.Exit to raise
    """The command cannot do what it was asked: ``{"error": message}`` on stdout with
    ``--json``, else ``error: message`` on stderr (a peer's text escaped); the ``typer.Exit``
    (``code``) to raise."""
    import typer

    if as_json:
        typer.echo(json.dumps({"error": message}, ensure_ascii=False))
    else:
        typer.echo(f"error: {printable(message)}", err=True)
    return typer.Exit(code)
