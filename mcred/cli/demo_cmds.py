"""``mcred demo``: the main job on embedded defaults."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def demo() -> None:
        """Provision phones, present, sign, hand over, and show who is refused (work in progress)."""
        typer.echo("mcred demo: not built yet", err=True)
        raise typer.Exit(1)
