"""``mcred export ...``: trust and revocation material written to files.

Areas add their commands to :data:`export_app` from their own modules.
"""

from __future__ import annotations

import typer

export_app = typer.Typer(help="Write trust anchors, certificates and CRLs to files.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(export_app, name="export")
