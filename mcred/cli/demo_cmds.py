"""``mcred demo``: the main job on embedded defaults (issue 7 item 4; mcred/demo.py)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(
        key_type: str = typer.Option("p384", "--key-type", help="JPKI key type: p384 or rsa2048."),
    ) -> None:
        """Provision two phones, present, sign, hand one over, and show the old phone refused
        and the new one accepted; then a move, and a child's phone (no signing certificate under
        15). A fresh temporary data directory unless MCRED_HOME is set."""
        from mcred.cli.text import make_console
        from mcred.context import Context
        from mcred.demo import run_demo

        console = make_console(soft_wrap=True)
        home = os.environ.get("MCRED_HOME")
        path = Path(home) if home else Path(tempfile.mkdtemp(prefix="mcred-demo-"))
        try:
            # the steps quote reasons and commands (pip install 'mcred[ble]'): text, not markup
            run_demo(Context.open(path), lambda text: console.print(text, highlight=False, markup=False),
                     key_type=key_type)
        except AssertionError as exc:
            console.print("demo failed:", style="red", end=" ")
            console.print(str(exc), markup=False)
            raise typer.Exit(1) from None

    @app.command()
    def doctor(as_json: bool = typer.Option(False, "--json")) -> None:
        """What this installation and this machine can do (database, keys, PostgreSQL, PC/SC
        and OpenSC, HSM, the TypeScript mdoc peer, OpenSSL), and how to install the rest; the
        TSM's quarantined SEs and unfinished jobs. Exit 1 when the installation itself
        (database, key stores) is not usable."""
        import json

        from rich.table import Column, Table

        from mcred.cli.text import make_console
        from mcred.context import DEFAULT_PUBLIC_URL, ConfigError, Context, public_url
        from mcred.doctor import as_json as to_json
        from mcred.doctor import as_lines, diagnose

        try:
            url = public_url()
        except ConfigError:  # a finding of its own names it
            url = DEFAULT_PUBLIC_URL
        ctx = Context.open(public_url=url)
        findings = diagnose(ctx)
        report = to_json(findings, ctx.home)
        if as_json:
            typer.echo(json.dumps(report, ensure_ascii=False, indent=2))
        else:
            console = make_console()
            if console.is_terminal or "COLUMNS" in os.environ:
                # URLs and paths are to be copied: folded on a narrow terminal, never cut with an ellipsis
                table = Table("", "component", *(Column(h, overflow="fold") for h in ("state", "enables", "to get it")),
                              title=f"mcred at {ctx.home}")
                for f in findings:
                    table.add_row("[green]ok[/]" if f.ok else "[yellow]--[/]", f.name, f.detail, f.enables, f.fix)
                console.print(table)
            else:
                # a pipe, a file, a CI log: a table as wide as its longest cell in every column
                # (hundreds of columns of padding) reads badly; one line per component, what
                # a missing one would enable and how to get it beneath
                typer.echo(as_lines(findings, ctx.home))
        raise typer.Exit(0 if report["ready"] else 1)
