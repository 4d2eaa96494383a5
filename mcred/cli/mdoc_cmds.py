"""``mcred mdoc ...`` and ``mcred inspect``."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    mdoc = typer.Typer(help="ISO 18013-5 mdoc tools.", no_args_is_help=True)
    app.add_typer(mdoc, name="mdoc")
