"""Text from peers (a reader's verdict, an mdoc's docType and element names, a server's
error body) on the terminal: control characters escaped, so that no escape sequence a
peer chose acts on the terminal, and never read as rich markup, so that ``[link=...]`` or
``[red]`` in it stays text."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

from rich.console import Console, ConsoleDimensions
from rich.markup import escape
from rich.text import Text

from reader.text import printable

if TYPE_CHECKING:
    from rich.table import Table

#: The width of output that is not a terminal (a pipe, a file, a CI log): no line is wrapped or
#: cut short at rich's default of 80 columns.
UNWRAPPED = 10_000


class _Console(Console):
    """A rich console that wraps only on a terminal: when its output is a pipe or a file and
    COLUMNS is not set, lines are as long as they are, so that ids, hints with job ids,
    URLs, paths and QR codes come out whole (rich's default there is 80 columns, which cut
    table columns and wrapped hints mid-token). On a terminal, or with COLUMNS, as rich does."""

    def __init__(self, *args, **kwargs) -> None:  # rich.console.Console's
        columns = os.environ.get("COLUMNS", "")
        self._unbounded = kwargs.get("width") is None and not columns.isdigit()
        super().__init__(*args, **kwargs)

    @property
    def size(self) -> ConsoleDimensions:
        size = Console.size.fget(self)
        if self._unbounded and not self.is_terminal:
            return ConsoleDimensions(UNWRAPPED, size.height)
        return size

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        self._unbounded = False
        Console.size.fset(self, new_size)


def make_console(*, stderr: bool = False, **kwargs: object) -> Console:
    """The CLI's rich console (stdout, or stderr): every command's text goes through one of
    these, so that output that is not a terminal is never wrapped or cut (:class:`_Console`)."""
    return _Console(stderr=stderr, **kwargs)


#: The holder's secrets by their key in a holder file and in --json output, as every command
#: that shows them (provision, handover, holder renew-card, jpki pin reset) names them.
SECRET_LABELS = {"pin": "user-auth PIN", "password": "signing password", "puk": "PUK"}


def secret_lines(shown: dict[str, str]) -> list[str]:
    """``shown`` (key: value) as aligned lines, ``user-auth PIN    1234``."""
    width = max(map(len, SECRET_LABELS.values()))
    return [f"{SECRET_LABELS.get(k, k):<{width}} {v}" for k, v in shown.items()]


def cell(value: object) -> Text:
    """A table cell or title holding a peer's text."""
    return Text(printable(str(value)))


def named_check(check: dict) -> str:
    """A verdict's check by its name and code, ``revocation [revoked]``: the code the JSON
    has, what a script branches on (left out when a peer's verdict has none). A peer's text
    escaped."""
    code = check.get("code")
    return printable(str(check.get("name"))) + (f" [{printable(str(code))}]" if code is not None else "")


def check_line(check: dict) -> str:
    """A verdict's check as one line, as the JPKI relying party prints them: ``FAIL
    revocation [revoked]: <reason>`` (``ok  `` when it passed; :func:`named_check`, as the
    mdoc tables of :func:`checks_table` show it). A peer's text escaped."""
    return f"{'ok  ' if check.get('passed') else 'FAIL'} {named_check(check)}: {printable(str(check.get('reason')))}"


def revocation_line(check: dict) -> str | None:
    """Under a ``revocation`` check that a verified answer says revoked (or on hold), or a
    ``signature_timestamp`` check whose TSA unit was revoked, its
    JSON's ``revoked_at`` and ``revocation_reason`` as they are there, indented:
    ``  revoked_at=2026-11-23T01:00:00+00:00 revocation_reason=affiliationChanged`` (77
    columns with the longest J-LIS reason), and ``invalid_since=...`` after them when the
    answer gave an invalidity date (a hold made final); None when all are null or absent."""
    facts = [f"{key}={printable(str(check[key]))}" for key in ("revoked_at", "revocation_reason", "invalid_since")
             if check.get(key) is not None]
    return "  " + " ".join(facts) if facts else None


#: The widest the ``check [code]`` column of :func:`checks_table` grows: the longest check
#: name (``mso_signed_within_ds_validity``) fits, a long name with its code wraps before the
#: code, so that the reason keeps about 36 columns of an 80-column terminal.
CHECK_COLUMN = 30


def checks_table(checks: list[dict], *, title: str, result: str = "result") -> Table:
    """A verdict's checks as the mdoc commands show them: ``check [code]``
    (:func:`named_check`, as :func:`check_line` prints it), ``result`` (pass or FAIL) and
    ``reason``, folded on a narrow terminal. A peer's text escaped."""
    from rich.table import Column, Table

    table = Table(Column(Text("check [code]"), overflow="fold", max_width=CHECK_COLUMN), result,
                  Column("reason", overflow="fold"), title=title)
    for c in checks:
        table.add_row(Text(named_check(c)), "[green]pass[/]" if c.get("passed") else "[red]FAIL[/]",
                      cell(c.get("reason")))
    return table


def markup_safe(value: object) -> str:
    """A peer's text to embed in a markup string (``f"[red]{markup_safe(msg)}[/]"``)."""
    return escape(printable(str(value)))


def listing(rows: list[dict], columns: dict[str, str], as_json: bool) -> None:
    """``rows`` as one JSON array, or as a table of ``columns`` (key: heading); a value
    ``None`` shows as an empty cell."""
    from rich.table import Column, Table

    if as_json:
        print(json.dumps(rows, ensure_ascii=False))
        return
    # ids are to be copied (`holder consents --withdraw ID`): folded on a narrow terminal, never cut
    table = Table(*(Column(heading, overflow="fold") for heading in columns.values()))
    for row in rows:
        table.add_row(*(cell("" if row[k] is None else row[k]) for k in columns))
    make_console().print(table)


def echo_json_array(rows: Iterable[object], *, indent: int | None = None) -> None:
    """The text of ``json.dumps(list(rows), indent=indent)`` (non-ASCII kept) on stdout, written
    an element at a time as ``rows`` yields them: a listing of a large installation neither
    holds every row nor waits for the last before the first is out."""
    import textwrap

    import typer

    typer.echo("[", nl=False)
    n = 0
    for n, row in enumerate(rows, 1):
        if indent is None:
            typer.echo((", " if n > 1 else "") + json.dumps(row, ensure_ascii=False), nl=False)
        else:
            text = textwrap.indent(json.dumps(row, ensure_ascii=False, indent=indent), " " * indent)
            typer.echo(("," if n > 1 else "") + "\n" + text, nl=False)
    typer.echo("\n]" if n and indent is not None else "]")


#: The commands whose ``--json`` answer is a verdict in the result shape of ``mcred mdoc
#: verify`` (``{"valid", "checks", "documents"}``), by their path: a refusal of theirs is that
#: shape too, ``{"valid": false, "error", "checks": [], "documents": []}``, where any other
#: command's is ``{"error"}`` (:func:`error_document`; specs/cli.md).
VERDICT_COMMANDS = frozenset({("mdoc", "verify"), ("verify",), ("present",), ("jpki", "verify"), ("jpki", "auth"),
                              ("reader", "ask"), ("reader", "nfc"), ("reader", "ble")})


def error_document(message: str, *, verdict: bool = False) -> str:
    """The one JSON document a command prints on stdout with ``--json`` when it cannot do what
    it was asked: ``{"error": message}``, or for a verdict command (:data:`VERDICT_COMMANDS`)
    the verdict with no check, ``{"valid": false, "error", "checks": [], "documents": []}``.
    Either way a script finds ``error``."""
    body = {"valid": False, "error": message, "checks": [], "documents": []} if verdict else {"error": message}
    return json.dumps(body, ensure_ascii=False)


def json_requested(args: list[str]) -> bool:
    """Whether a command line asks for ``--json`` (before a ``--``, after which words are
    arguments)."""
    for arg in args:
        if arg == "--":
            return False
        if arg == "--json":
            return True
    return False


def fail(message: str, as_json: bool, code: int = 2):  # noqa: ANN201 - a typer.Exit to raise
    """The command cannot do what it was asked: ``{"error": message}`` on stdout with
    ``--json`` (:func:`error_document`), else ``error: message`` on stderr (a peer's text
    escaped); the ``typer.Exit`` (``code``) to raise."""
    import typer

    if as_json:
        typer.echo(error_document(message))
    else:
        typer.echo(f"error: {printable(message)}", err=True)
    return typer.Exit(code)


def _scalar(value: object) -> str:
    """A value as a person reads it: none, yes / no, the text itself (not Python's repr)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def print_tree(value: object, indent: int = 0, echo=None) -> None:  # noqa: ANN001
    """A JSON-shaped value (what ``--json`` prints) as indented ``key: value`` lines: maps
    and lists nested beneath their key, an empty one and null as ``-``, booleans ``yes`` /
    ``no``, peers' text escaped (:func:`reader.text.printable`)."""
    import typer

    echo = echo or typer.echo
    pad = "  " * indent
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, dict | list) and v:
                echo(f"{pad}{printable(str(k))}:")
                print_tree(v, indent + 1, echo)
            else:
                shown = "-" if isinstance(v, dict | list) else _scalar(v)  # an empty one: none
                echo(f"{pad}{printable(str(k))}: {printable(shown)}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict | list):
                echo(f"{pad}-")
                print_tree(item, indent + 1, echo)
            else:
                echo(f"{pad}- {printable(_scalar(item))}")
    else:
        echo(f"{pad}{printable(_scalar(value))}")


def key_destruction_line(done) -> str | None:  # noqa: ANN001 - an issuer.key_destruction.KeyDestructionResult
    """What became of a key asked to be destroyed (``--destroy-key``, ``mcred mdoc|jpki|tsa key
    destroy``): destroyed now, found gone, or destroyed before; None when none was asked."""
    if done is None:
        return None
    at = f"{done.key_destroyed_at:%Y-%m-%d %H:%M:%S} UTC"
    if done.restored:
        return (f"the key of {done.label}, recorded destroyed at {at}, was in the key store again (a backup "
                "restored?): destroyed again now")
    if not done.changed:
        return f"the key of {done.label} was already destroyed ({at})"
    if done.found_absent:
        return f"the key of {done.label} was not in the key store any more: recorded destroyed at {at}"
    final = ""
    if done.final_crls:
        first = done.final_crls[0]
        final = (f"; its final CRL ({first.crl}, cRLNumber {first.crl_number}, {first.entries} entries, nextUpdate "
                 "9999-12-31) is served for good" if len(done.final_crls) == 1 else
                 f"; its final CRLs ({len(done.final_crls)}, one per partition, nextUpdate 9999-12-31) are "
                 "served for good")
    return f"the key of {done.label} destroyed at {at}{final}; its certificate stays published"
