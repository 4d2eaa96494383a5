"""``mcred jpki consent document|register|basic-four`` (the relying party's side of the latest
basic four data service, 最新の利用者情報提供), ``mcred holder consents`` (the holder's:
list, withdraw) and ``mcred jpki linkage`` (the user-authentication certificate linkage
service, 利用者証明用電子証明書の新旧紐付け). specs/jpki-profile.md, "Latest basic four data" and
"User-authentication certificate linkage"."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import typer

from mcred.cli.state import cli_actor
from mcred.cli.text import fail

consent_app = typer.Typer(
    help="The latest basic four data service (最新の利用者情報提供): a customer's signed consent "
         "registered, then their name, birth date, sex and address now, for ten years.",
    no_args_is_help=True)

ISSUER = typer.Option(None, "--issuer", help="The issuer service's URL (e.g. http://127.0.0.1:8470): ask it "
                      "over HTTP with --token (scope reader; the token's name is the relying party). "
                      "Default: this installation, as the relying party --rp.")
TOKEN = typer.Option(None, "--token", envvar="MCRED_API_TOKEN", help="Bearer token for --issuer.")
RP = typer.Option(None, "--rp", help="Without --issuer: the relying party (as the consent names it). With "
                  "--issuer the relying party is the token's name, and --rp is refused.")
JSON = typer.Option(False, "--json")


def _http(method: str, url: str, path: str, token: str | None, body: dict | None, as_json: bool) -> dict:
    from reader.fetch import SESSION_MAX_BYTES, FetchError, fetch

    if not token:
        raise fail("--issuer needs --token (scope reader, named as the relying party)", as_json)
    target = url.rstrip("/") + path
    try:
        answer = fetch(None, method, target, max_bytes=SESSION_MAX_BYTES, timeout=30,
                       content=json.dumps(body).encode() if body is not None else None,
                       headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    except FetchError as exc:
        raise fail(f"{target}: {exc}", as_json) from None
    try:
        got = json.loads(answer.body)
    except ValueError:
        raise fail(f"{target}: HTTP {answer.status}, not JSON", as_json) from None
    if answer.status >= 300:
        detail = got.get("detail") if isinstance(got, dict) else None
        raise fail(f"{target}: HTTP {answer.status}: {detail or answer.preview(200)}", as_json, 1)
    return got


def ask_linkage(issuer: str, token: str | None, serials: list[str], as_json: bool) -> list[dict]:
    """The links an issuer's ``POST /jpki/linkage`` answers for ``serials`` (each judged by
    whoever uses it); a clear failure when the answer holds no list of links."""
    got = _http("POST", issuer, "/jpki/linkage", token, {"serials": serials}, as_json)
    links = got.get("links") if isinstance(got, dict) else None
    if not isinstance(links, list):
        raise fail(f"{issuer}: the linkage answer holds no list of links", as_json, 1)
    return links


def _local_rp(rp: str | None, as_json: bool) -> str:
    if not rp:
        raise fail("give --rp (the relying party) or --issuer with --token", as_json)
    return rp


def _no_rp_over_http(rp: str | None, as_json: bool) -> None:
    """Over HTTP the relying party is the token's name, never --rp: refused rather than left
    unread, so that --rp 'Life Co' with another party's token is not answered as that party."""
    if rp is not None:
        raise fail(f"--rp is this installation's relying party; over HTTP (--issuer) the relying party is "
                   f"the name of the --token (a reader token named {rp!r}: mcred token create --scope reader "
                   f"--name {rp!r}); leave --rp out", as_json)


@consent_app.command("document")
def document(rp: str = typer.Option(..., "--rp", help="The relying party the customer consents to."),
             purpose: str = typer.Option(..., "--purpose", help="Why, as the customer reads it."),
             out: Path = typer.Option(..., "--out", help="Where to write the document (JSON) for the "
                                      "customer to sign: mcred jpki sign --phone ID --slot sign ...")) -> None:
    """Make a consent document for a customer to sign with their signing certificate."""
    from protocols.jpki.consent import ConsentError, build_consent

    try:
        out.write_bytes(build_consent(rp, purpose))
    except ConsentError as exc:
        raise typer.BadParameter(str(exc)) from None
    typer.echo(f"wrote {out}: to be signed with the customer's signing certificate")


@consent_app.command("register")
def register(content: Path = typer.Option(..., "--content", exists=True, dir_okay=False,
                                          help="The consent document the customer signed."),
             signature: Path = typer.Option(..., "--signature", exists=True, dir_okay=False,
                                            help="Its detached CMS signature (.p7s)."),
             issuer: str | None = ISSUER, token: str | None = TOKEN, rp: str | None = RP,
             as_json: bool = JSON) -> None:
    """Register a customer's signed consent; print its id (what basic-four asks with)."""
    doc, sig = content.read_bytes(), signature.read_bytes()
    if issuer:
        _no_rp_over_http(rp, as_json)
        got = _http("POST", issuer, "/jpki/consents", token, {"document": base64.b64encode(doc).decode(),
                                                               "signature": base64.b64encode(sig).decode()},
                    as_json)
    else:
        from issuer.jpki import consents
        from mcred.cli.state import open_context

        try:
            view, registered = consents.register(open_context().sessions, doc, sig,
                                                 relying_party=_local_rp(rp, as_json), actor=cli_actor())
        except consents.ConsentRefused as exc:
            raise fail(str(exc), as_json, 1) from None
        got = {**view.to_dict(), "registered": registered}
    if as_json:
        typer.echo(json.dumps(got, ensure_ascii=False))
    else:
        typer.echo(f"consent {got['id']} ({'registered' if got['registered'] else 'registered before'}): "
                   f"holder {got['holder']} to {got['relying_party']}, until {got['expires_at'][:10]}")


@consent_app.command("basic-four")
def basic_four(consent_id: str = typer.Argument(..., help="The consent (as register printed it)."),
               issuer: str | None = ISSUER, token: str | None = TOKEN, rp: str | None = RP,
               as_json: bool = JSON) -> None:
    """The consenting customer's name, birth date, sex and address now, what changed since
    they consented, and their signing certificate now. Exit 1 when refused (withdrawn,
    expired, unknown)."""
    if issuer:
        import re

        _no_rp_over_http(rp, as_json)
        if not re.fullmatch(r"[0-9a-f]{32}", consent_id):
            raise fail(f"{consent_id!r} is not a consent id (32 hex digits)", as_json)
        got = _http("GET", issuer, f"/jpki/consents/{consent_id}/basic-four", token, None, as_json)
    else:
        from issuer.jpki import consents
        from mcred.cli.state import open_context

        try:
            got = consents.latest_basic_four(open_context().sessions, consent_id,
                                             relying_party=_local_rp(rp, as_json), actor=cli_actor())
        except consents.ConsentRefused as exc:
            raise fail(str(exc), as_json, 1) from None
    if as_json:
        typer.echo(json.dumps(got, ensure_ascii=False))
        return
    from reader.text import printable

    four = got["basic_four"]
    typer.echo(printable(f"name {four['name']}, born {four['birth_date']}, sex {four['sex']}, "
                         f"address {four['address']}"))
    typer.echo("changed since the consent: " + (", ".join(got["changed"]) or "nothing"))
    typer.echo(f"signing certificate now: {got['signing_certificate'] or 'none valid'}")


def holder_consents(holder_id: str = typer.Argument(..., help="The holder (mcred holder list)."),
                    withdraw: str | None = typer.Option(None, "--withdraw", help="Withdraw this consent."),
                    reason: str | None = typer.Option(None, "--reason", help="Why (audited), with --withdraw."),
                    as_json: bool = JSON) -> None:
    """A holder's consents to the latest basic four data service; --withdraw one (its relying
    party is refused from then on)."""
    from issuer.jpki import consents
    from mcred.cli.state import open_context

    sessions = open_context().sessions
    if withdraw is not None:
        if not (reason or "").strip():
            raise typer.BadParameter("give the reason (it is audited)", param_hint="--reason")
        try:
            consents.withdraw(sessions, withdraw, holder_id=holder_id, actor=cli_actor(), reason=reason)
        except consents.ConsentRefused as exc:
            raise fail(str(exc), as_json) from None
    try:
        rows = [c.to_dict() for c in consents.of_holder(sessions, holder_id)]
    except consents.ConsentRefused as exc:  # no such holder: the input, exit 2, as holder show
        raise fail(str(exc), as_json) from None
    from mcred.cli.text import listing

    listing(rows if as_json else [{**r, "granted_at": r["granted_at"][:10], "expires_at": r["expires_at"][:10]}
                                  for r in rows],
            {"id": "consent", "relying_party": "relying party", "state": "state", "granted_at": "granted",
             "expires_at": "until"}, as_json)


def linkage(serials: list[str] = typer.Argument(..., help="Old user-authentication certificate serials "
                                                "as the relying party keeps them: hex (1a2b..., 1A:2B:..., "
                                                "0x1a2b..., openssl's serial=1A2B...) or decimal of more "
                                                "than 40 digits."),
            issuer: str | None = ISSUER, token: str | None = TOKEN,
            rp: str | None = typer.Option(None, "--rp", help="Without --issuer: the relying party "
                                          "the audit names (default: cli)."),
            as_json: bool = JSON) -> None:
    """The user-authentication certificate linkage service (利用者証明用電子証明書の新旧紐付け):
    for each old serial, the newer user-authentication certificates issued to the same
    holder (a new phone, a renewed card) and the one valid now, so that an account keyed by
    the old serial follows its holder. Exit 1 when a serial is not one of this issuer's
    user-authentication certificates."""
    from mcred.cli.text import listing

    if issuer:
        got = ask_linkage(issuer, token, serials, as_json)
        if not all(isinstance(link, dict) and isinstance(link.get("successors"), list)
                   and all(isinstance(s, dict) for s in link["successors"]) for link in got):
            raise fail(f"{issuer}: a link of the answer is not an object with a list of successors", as_json, 1)
    else:
        from issuer.jpki import linkage as lk
        from mcred.cli.state import open_context

        try:
            got = lk.answer(open_context().sessions, serials, relying_party=rp or "cli", actor=cli_actor())["links"]
        except lk.LinkageRefused as exc:
            raise fail(str(exc), as_json) from None
    rows = [{"serial": link.get("serial"),
             "successors": ", ".join(f"{s.get('serial')} ({s.get('status')}"
                                     f"{', ' + str(s['reason']) if s.get('reason') else ''})"
                                     for s in link["successors"]) or ("none" if link.get("found") else ""),
             "current": link.get("current") or ("" if link.get("found") else link.get("problem"))} for link in got]
    if as_json:
        typer.echo(json.dumps(got, ensure_ascii=False))
    else:
        listing(rows, {"serial": "old serial", "successors": "newer certificates (state)",
                       "current": "valid now"}, False)
    if not all(link.get("found") for link in got):
        raise typer.Exit(1)
