"""``mcred token create|list|revoke``: bearer tokens of the HTTP API (specs/api.md).

The token is printed once, at creation; the database keeps only a hash of its secret.
"""

from __future__ import annotations

import typer

from issuer.api.scopes import SCOPES
from mcred.cli.state import cli_actor, open_context

token_app = typer.Typer(help="Bearer tokens of the HTTP API (scopes: "
                        + ", ".join(SCOPES) + "; operator implies all).",
                        no_args_is_help=True)


@token_app.command("create")
def create(scope: list[str] = typer.Option(..., "--scope", help="operator | issuer | tsm | "
                                           "reader (repeat for several)"),
           name: str = typer.Option("", "--name", help="a label for the token")) -> None:
    """Create a token and print it once."""
    from issuer.api.auth import TokenError, create_token

    try:
        token_id, token = create_token(open_context().sessions, scope, name, actor=cli_actor())
    except TokenError as exc:
        raise typer.BadParameter(str(exc), param_hint="--name" if "name" in str(exc) else "--scope") from None
    typer.echo(token)
    typer.echo(f"token id {token_id}, scopes {' '.join(dict.fromkeys(scope))}: "
               "store it now, it is not shown again", err=True)


@token_app.command("list")
def list_() -> None:
    """Every token (id, name, scopes, state); never the secrets."""
    from issuer.api.auth import list_tokens

    for t in list_tokens(open_context().sessions):
        state = "revoked" if t.revoked else "active"
        typer.echo(f"{t.id}  {state:7}  {' '.join(t.scopes):28}  {t.name}  {t.created_at}")


@token_app.command("revoke")
def revoke(token_id: str = typer.Argument(..., help="the token's id")) -> None:
    """Revoke a token: it is refused from the next request on."""
    from issuer.api.auth import TokenError, revoke_token

    try:
        changed = revoke_token(open_context().sessions, token_id, actor=cli_actor())
    except TokenError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"revoked {token_id}" if changed else f"{token_id} was already revoked")


def register(app: typer.Typer) -> None:
    app.add_typer(token_app, name="token")
