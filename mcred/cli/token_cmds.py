"""``mcred token create|list|revoke``: bearer tokens of the HTTP API (specs/api.md).

The token is printed once, at creation; the database keeps only a hash of its secret.
"""

from __future__ import annotations

import datetime as dt
import json
import re

import typer

from issuer.api.scopes import SCOPES
from mcred.cli.state import cli_actor, open_context

token_app = typer.Typer(help="Bearer tokens of the HTTP API (scopes: "
                        + ", ".join(SCOPES) + "; operator implies all).",
                        no_args_is_help=True)


_TERM = re.compile(r"^([1-9][0-9]{0,4})([dh])$")


def expiry(text: str | None, now: dt.datetime) -> dt.datetime | None:
    """``--expires``: a term from ``now`` (``90d``, ``12h``) or an instant with its offset
    (``2027-03-31T23:59:59+09:00``); ``typer.BadParameter`` naming the forms otherwise."""
    if text is None:
        return None
    m = _TERM.match(text.strip())
    if m:
        n = int(m[1])
        return now + (dt.timedelta(days=n) if m[2] == "d" else dt.timedelta(hours=n))
    try:
        at = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        at = None
    if at is None or at.tzinfo is None:
        raise typer.BadParameter(f"{text!r}: give a term (90d, 12h) or an instant with its offset "
                                 "(2027-03-31T23:59:59+09:00)", param_hint="--expires")
    return at


@token_app.command("create")
def create(scope: list[str] = typer.Option(..., "--scope", help="operator | issuer | tsm | "
                                           "reader (repeat for several)"),
           name: str = typer.Option("", "--name", help="a label for the token"),
           expires: str = typer.Option(None, "--expires", help="refused from then on, as a revoked token: a term "
                                       "(90d, 12h) or an instant with its offset (2027-03-31T23:59:59+09:00); "
                                       "default: until revoked"),
           as_json: bool = typer.Option(False, "--json", help="Print {\"id\", \"token\", \"scopes\", \"name\", "
                                        "\"expires_at\"}: the token, shown once.")) -> None:
    """Create a token and print it once."""
    from issuer.api.auth import TokenError, create_token, stored_name
    from issuer.db import utcnow

    expires_at = expiry(expires, utcnow())
    try:
        token_id, token = create_token(open_context().sessions, scope, name, actor=cli_actor(),
                                       expires_at=expires_at)
    except TokenError as exc:
        hint = "--name" if "name" in str(exc) else "--expires" if "expiry" in str(exc) else "--scope"
        raise typer.BadParameter(str(exc), param_hint=hint) from None
    if as_json:  # expires_at as `token list --json` gives it
        typer.echo(json.dumps({"id": token_id, "token": token, "scopes": list(dict.fromkeys(scope)),
                               "name": stored_name(token_id, name),  # as `token list` and the audit name it
                               "expires_at": expires_at.astimezone(dt.UTC).isoformat() if expires_at else None},
                              ensure_ascii=False))
        return
    typer.echo(token)
    until = f", valid until {expires_at.astimezone(dt.UTC).isoformat(timespec='seconds')}" if expires_at else ""
    typer.echo(f"token id {token_id}, scopes {' '.join(dict.fromkeys(scope))}{until}: "
               "store it now, it is not shown again", err=True)


@token_app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help="Print one JSON array of {\"id\", \"state\", "
                                       "\"scopes\", \"name\", \"created_at\", \"expires_at\"}.")) -> None:
    """Every token (id, state: active, expired or revoked, scopes, name, created, expiry);
    never the secrets."""
    from issuer.api.auth import list_tokens

    tokens = list_tokens(open_context().sessions)
    if as_json:
        typer.echo(json.dumps([{"id": t.id, "state": t.state, "scopes": list(t.scopes), "name": t.name,
                                "created_at": t.created_at, "expires_at": t.expires_at} for t in tokens],
                              ensure_ascii=False))
        return
    for t in tokens:
        typer.echo(f"{t.id}  {t.state:7}  {' '.join(t.scopes):28}  {t.name}  {t.created_at}"
                   + (f"  expires {t.expires_at}" if t.expires_at else ""))


@token_app.command("revoke")
def revoke(token_id: str = typer.Argument(..., help="the token's id"),
           as_json: bool = typer.Option(False, "--json", help="Print {\"id\", \"changed\"}: changed false when "
                                        "it was revoked already.")) -> None:
    """Revoke a token: it is refused from the next request on. Exit 2 for an id that is no
    token's."""
    from issuer.api.auth import TokenError, revoke_token
    from mcred.cli.text import fail

    try:
        changed = revoke_token(open_context().sessions, token_id, actor=cli_actor())
    except TokenError as exc:  # no such token: the input, exit 2 as for a phone or a holder that is not
        raise fail(str(exc), as_json) from None
    if as_json:
        typer.echo(json.dumps({"id": token_id, "changed": changed}))
        return
    typer.echo(f"revoked {token_id}" if changed else f"{token_id} was already revoked")


def register(app: typer.Typer) -> None:
    app.add_typer(token_app, name="token")
