"""``mcred tsa stamp|verify|log|revoke|stage|rollover|root list``: the time-stamping authority from the command line (RFC 3161).

``stamp`` asks a TSA (this installation's, or one at ``--url``) for a token over a file and
writes the TimeStampResp as ``openssl ts`` writes it (``.tsr``); ``verify`` checks a reply
or token against a file and the time-stamping roots; ``log`` lists what this installation's
TSA stamped (its audit rows), to answer "did we issue this token?"; ``revoke`` takes a TSA
unit out of service (its root's CRL lists it); ``stage`` publishes the next root generation ahead
of its use; ``rollover`` starts the next root generation (the staged one, else a new one) with a
new unit; ``root list`` lists the root generations and their units (the registry alone);
``key destroy`` destroys a key no duty needs.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import typer

from mcred.cli.state import cli_actor, open_context, out_path, parse_invalid_since

tsa_app = typer.Typer(help="RFC 3161 time-stamps: get one, check one, list what this TSA stamped "
                      "(specs/revocation.md section 5.2).", no_args_is_help=True)


def _fail(message: str, code: int = 1, as_json: bool = False) -> typer.Exit:
    from mcred.cli.text import fail

    return fail(message, as_json, code)


@tsa_app.command("stamp")
def stamp(file: Path = typer.Argument(..., exists=True, dir_okay=False),
          url: str | None = typer.Option(None, "--url", help="an RFC 3161 TSA (default: this "
                                         "installation's, in-process)"),
          hash_algorithm: str = typer.Option("sha256", "--hash", help="sha256, sha384 or sha512"),
          pdf: bool = typer.Option(False, "--pdf", help="A document time-stamp inside the PDF FILE instead "
                                   "(PAdES B-LTA; when it has one, the last one's validation data first: "
                                   "the renewal before its TSA certificate ends)."),
          tsa_root: Path | None = typer.Option(None, "--tsa-root", exists=True, dir_okay=False,
                                               help="With --url: the TSA's root (PEM)."),
          out: Path | None = typer.Option(None, "--out", callback=out_path,
                                          help="the TimeStampResp (default FILE.tsr); with --pdf the "
                                          "time-stamped PDF (default FILE's name with .stamped.pdf)"),
          as_json: bool = typer.Option(False, "--json", help="Print {\"out\", \"bytes\", \"gen_time\"} (with "
                                       "--pdf, gen_time null: the PDF's document time-stamp).")) -> None:
    """Time-stamp FILE: its hash sent with a random nonce, the reply written as openssl ts
    writes it (openssl ts -reply -in FILE.tsr -text reads it); or, with --pdf, a document
    time-stamp inside it."""
    from mcred.timestamps import TimestampError
    from protocols import tsp

    if hash_algorithm not in tsp.HASHES:
        raise typer.BadParameter(f"{hash_algorithm!r}: one of {', '.join(tsp.HASHES)}", param_hint="--hash")
    stamper = stamper_for(url, tsa_root, url_option="--url")
    if pdf:
        _stamp_pdf(file, stamper, out, as_json)
        return
    try:
        reply, _token, gen_time = stamper.exchange(file.read_bytes(), hash_algorithm)
    except TimestampError as exc:
        raise _fail(str(exc), 2, as_json) from None
    target = out_path(out or file.with_name(file.name + ".tsr"))
    target.write_bytes(reply)
    if as_json:
        typer.echo(json.dumps({"out": str(target), "bytes": len(reply), "gen_time": gen_time.isoformat()},
                              ensure_ascii=False))
        return
    typer.echo(f"wrote {target} ({len(reply)} bytes): {file.name} stamped at {gen_time.isoformat()}")


def stamper_for(url: str | None, tsa_root: Path | None, *, url_option: str):  # noqa: ANN201 - a Stamper
    """The TSA a command takes its time-stamps from: this installation's (no ``url``), or
    the one at ``url``, its tokens verified under ``tsa_root`` when given. A ``tsa_root``
    without a ``url``, or one that is no PEM certificate, is a bad parameter."""
    from mcred.timestamps import Stamper
    from reader.relying_party import load_roots

    if tsa_root is not None and not url:
        raise typer.BadParameter(f"--tsa-root is the root of the TSA given with {url_option}")
    if not url:
        return Stamper.local(open_context())
    try:
        roots = load_roots(tsa_root.read_bytes()) if tsa_root else ()
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(f"{tsa_root}: {exc}", param_hint="--tsa-root") from None
    return Stamper.http(url, roots=roots)


def _stamp_pdf(file: Path, stamper, out: Path | None, as_json: bool) -> None:  # noqa: ANN001 - a Stamper
    from mcred.jpki_flow import jpki_issuer
    from mcred.jpki_pdf import PdfSigningError, timestamp_pdf

    trust = [*jpki_issuer(open_context()).roots("sign"), *stamper.roots]
    try:
        stamped = timestamp_pdf(file.read_bytes(), stamper, trust_roots=trust)
    except PdfSigningError as exc:
        raise _fail(f"{file}: {exc}", 2, as_json) from None
    target = out_path(out or file.with_name(file.stem + ".stamped.pdf"))
    target.write_bytes(stamped)
    if as_json:
        typer.echo(json.dumps({"out": str(target), "bytes": len(stamped), "gen_time": None}, ensure_ascii=False))
        return
    typer.echo(f"wrote {target} ({len(stamped)} bytes): a document time-stamp over {file.name}")


@tsa_app.command("verify")
def verify(reply: Path = typer.Argument(..., exists=True, dir_okay=False,
                                        help="a TimeStampResp (.tsr) or a bare TimeStampToken"),
           data: Path = typer.Option(..., "--data", exists=True, dir_okay=False, help="the file stamped"),
           roots: Path | None = typer.Option(None, "--roots", exists=True, dir_okay=False,
                                             help="time-stamping roots (PEM; default: this installation's TSA's)"),
           revocation: str = typer.Option("crl", "--revocation", help="crl: the TSA unit must not be on its "
                                           "root's CRL (fetched from the URL the unit names: `mcred serve` for "
                                           "this installation's) for keyCompromise, nor revoked before the "
                                           "time-stamp; none: not checked"),
           as_json: bool = typer.Option(False, "--json")) -> None:
    """Check a time-stamp of FILE: the token's signature, the TSA's certificate and its path
    to a trusted root, the imprint, and whether the TSA unit was revoked (its root's CRL).
    Exit 0 when it holds, 1 when not."""
    from protocols import tsp
    from protocols.certs import CertificateParseError
    from reader.relying_party import load_roots, tsa_unit_revoked

    if revocation not in ("crl", "none"):
        raise typer.BadParameter(f"{revocation!r}: crl or none", param_hint="--revocation")

    try:
        trust = load_roots(roots.read_bytes()) if roots else _authority().roots()
    except (CertificateParseError, OSError) as exc:
        raise typer.BadParameter(f"{roots}: {exc}", param_hint="--roots") from None
    raw = reply.read_bytes()
    try:
        try:
            token = tsp.token_of_response(raw)
        except tsp.ResponseRefused:
            raise
        except tsp.TspError:
            token = raw  # a bare token (a .tst, or the attribute's value)
        stamp = tsp.verify_token(token, data=data.read_bytes(), roots=trust)
        revoked = tsa_unit_revoked(stamp, dt.datetime.now(dt.UTC)) if revocation == "crl" else None
        if revoked:
            raise tsp.TspError(revoked + ("" if "cannot be checked" not in revoked else
                                          " (--revocation none to leave it unchecked)"))
    except tsp.TspError as exc:
        if as_json:
            print(json.dumps({"valid": False, "reason": str(exc)}, ensure_ascii=False))
        else:
            typer.echo(f"NOT VALID: {exc}")
        raise typer.Exit(1) from None
    if as_json:
        print(json.dumps({"valid": True, **stamp.to_dict(), "revocation": revocation}, ensure_ascii=False))
    else:
        typer.echo(f"VALID: {data.name} existed at {stamp.gen_time.isoformat()} "
                   f"(±{stamp.accuracy.total_seconds() if stamp.accuracy else 0:g} s), time-stamp "
                   f"{stamp.serial:x} by {stamp.tsa_certificate.subject.rfc4514_string()}, policy {stamp.policy}"
                   + ("; its unit not revoked (the root's CRL)" if revocation == "crl" else
                      "; the unit's revocation not checked"))


@tsa_app.command("revoke")
def revoke(unit: str = typer.Argument(..., help="the unit: its label (tsa-unit-N) or its certificate's serial (hex)"),
           reason: str = typer.Option(..., "--reason", help="keyCompromise (none of its time-stamps is relied "
                                      "on any more), superseded, cessationOfOperation, ..."),
           invalid_since: str | None = typer.Option(
               None, "--invalid-since", help="since when its key is known or suspected to have been compromised, "
               "or the unit otherwise invalid (its clock out of its accuracy, say): the CRL entry's invalidityDate "
               "(RFC 5280), an instant with its offset (2026-12-01T09:00:00+09:00), not after now. Relying parties "
               "then refuse its time-stamps made from then on (for keyCompromise, all of them, as before)."),
           destroy_key: bool = typer.Option(False, "--destroy-key", help="Then destroy its private key in the key "
                                            "store (mcred tsa key destroy): its certificate stays in the registry "
                                            "and in every token it made."),
           as_json: bool = typer.Option(False, "--json", help="Print {\"unit\", \"serial\", \"reason\", "
                                        "\"changed\"[, \"amended_from\"][, \"invalid_since\"][, "
                                        "\"key_destroyed_at\"]}: changed false when it was revoked already with "
                                        "nothing to amend; reason the unit's reason now.")) -> None:
    """Revoke a TSA unit: its root's CRL (/tsa/root.crl, /tsa/root-gN.crl for a unit of root
    generation N) lists it, a new unit stamps from now
    on. Relying parties refuse its time-stamps made at or after the revocation (or its
    --invalid-since, when earlier), and all of them for keyCompromise. A unit revoked already
    is amended: keyCompromise replaces another reason, and an --invalid-since earlier than the
    one recorded replaces it (its revocation time stays); nothing else changes a revoked unit."""
    from issuer.keystore import KeyStoreError
    from issuer.revocation import InvalidSinceRefused
    from issuer.tsa import TsaError
    from mcred.cli.text import key_destruction_line

    since = parse_invalid_since(invalid_since)
    try:
        done = _authority().revoke_unit_detail(unit, reason, actor=cli_actor(), invalid_since=since,
                                               destroy_key=destroy_key)
    except InvalidSinceRefused as exc:
        raise typer.BadParameter(exc.why, param_hint="--invalid-since") from None
    except TsaError as exc:
        raise typer.BadParameter(str(exc)) from None
    except KeyStoreError as exc:  # revoked (committed), the key not destroyed: run it again
        raise _fail(f"revoked, but its key was not destroyed: {exc} (mcred tsa key destroy {unit})", 2,
                    as_json) from None
    gone = done.key_destruction
    if as_json:
        typer.echo(json.dumps(done.to_json()))
        return
    now = f"{done.reason}, invalid since {done.invalid_since.isoformat()}" if done.invalid_since else done.reason
    said = (f"revoked ({done.amended_from}) -> revoked ({now}), amended" if done.amended_from
            else f"revoked ({now})" if done.changed else f"was revoked already ({now})")
    typer.echo(f"{done.label} (serial {done.serial:x}): {said}")
    if gone is not None:
        typer.echo(key_destruction_line(gone))


@tsa_app.command("rollover")
def rollover(as_json: bool = typer.Option(False, "--json", help="Print {\"root\", \"serial\", \"not_before\", "
                                          "\"not_after\", \"unit\", \"unit_serial\", \"unit_not_after\", "
                                          "\"previous\", \"crl\", \"automatic\", \"staged_since\"}: the new root "
                                          "generation, the unit it certified, the root it retired.")) -> None:
    """Roll the TSA's root over: the next root generation, the staged one (mcred tsa stage)
    when there is one, else a new one (tsa-root-gN, its key made in the key store), and a new
    unit under it, which stamps from now on (audited tsa.root.rollover). The older root is
    retired, not revoked: it certifies nothing more, and signs the CRL of the units it
    certified (at its own URL, /tsa/root.crl or /tsa/root-gN.crl) until they have all expired;
    their time-stamps verify as before. Relying parties that took the roots (mcred export
    tsa-root, GET /tsa/root.pem) since the staging hold the new one already; a new one made
    here they refuse until they take the roots again. The TSA stages its next root by itself a
    year before its root's last three years, and starts it when a new unit is due in them."""
    from issuer.keystore import KeyStoreError

    try:
        done = _authority().rollover(actor=cli_actor())
    except KeyStoreError as exc:
        raise _fail(f"the key store could not make the new root's key: {exc}", 2, as_json) from None
    if as_json:
        typer.echo(json.dumps(done.to_json(), ensure_ascii=False))
        return
    made = "the staged root " if done.staged_since else ""
    typer.echo(f"{made}{done.root} (serial {done.serial:x}) is the TSA's root from now on, valid until "
               f"{done.not_after.date().isoformat()}; {done.unit} (serial {done.unit_serial:x}) stamps under it"
               + (f", its revocation at {done.crl}" if done.crl else ""))
    if done.previous:
        typer.echo(f"{done.previous} is retired: it signs the CRL of its units until they expire")
    if done.staged_since:
        typer.echo(f"it has been in the roots (GET /tsa/root.pem) since {done.staged_since:%Y-%m-%d %H:%M} UTC: "
                   "relying parties that took them since then trust its time-stamps")
    else:
        typer.echo("relying parties need the new root: mcred export tsa-root --out tsa-root.pem (or GET "
                   "/tsa/root.pem; mcred tsa stage publishes the next root ahead of its use)")


@tsa_app.command("stage")
def stage(as_json: bool = typer.Option(False, "--json", help="Print {\"root\", \"serial\", \"not_before\", "
                                       "\"not_after\", \"current\", \"automatic\"}: the staged root generation "
                                       "and the root still current.")) -> None:
    """Make the TSA's next root generation and publish it with the roots (GET /tsa/root.pem,
    mcred export tsa-root: right after the current one), without starting it (audited
    tsa.root.stage). The current root and its unit go on stamping; relying parties that take
    the roots from now on already trust the staged root when mcred tsa rollover (or the TSA's
    own rollover in its root's last three years) starts it. One staged root at a time."""
    from issuer.keystore import KeyStoreError
    from issuer.tsa import TsaRootAlreadyStaged

    try:
        done = _authority().stage(actor=cli_actor())
    except TsaRootAlreadyStaged as exc:  # nothing was made
        raise _fail(str(exc), 2, as_json) from None
    except KeyStoreError as exc:
        raise _fail(f"the key store could not make the staged root's key: {exc}", 2, as_json) from None
    if as_json:
        typer.echo(json.dumps(done.to_json(), ensure_ascii=False))
        return
    typer.echo(f"staged root {done.root} (serial {done.serial:x}) valid until {done.not_after.date().isoformat()}; "
               f"{done.current} goes on certifying the unit that stamps")
    typer.echo("give relying parties the roots now (mcred export tsa-root --out tsa-root.pem, or GET /tsa/root.pem), "
               "then start it: mcred tsa rollover")


root_app = typer.Typer(help="The TSA's root generations, with the units they certified: list.",
                       no_args_is_help=True)
tsa_app.add_typer(root_app, name="root")


@root_app.command("list")
def root_list(as_json: bool = typer.Option(False, "--json", help="Print {\"roots\": [...]}, as GET "
                                           "/trust/tsa-roots answers.")) -> None:
    """Every root generation of the TSA, oldest first: serial, subject, validity, state
    (current; staged: in the roots, GET /tsa/root.pem, certifying nothing until the rollover,
    mcred tsa rollover or the TSA's own, starts it; retired), when its key was destroyed, its
    CRL, how many valid units it certified, until when it has duties (its CRL: the end of the
    last unit it certified that has not expired), and its units (stamping, retired, revoked,
    expired). From the registry alone: the key store is not opened, nothing is made."""
    from issuer.tsa_listing import list_roots
    from mcred.timestamps import tsa_registry

    roots = list_roots(tsa_registry(open_context()))
    if as_json:
        typer.echo(json.dumps({"roots": [r.to_json() for r in roots]}, ensure_ascii=False))
        return
    if not roots:
        typer.echo("no TSA root yet: made at the first time-stamp")
    for r in roots:
        state = {"current": "current",
                 "staged": f"staged {r.created_at:%Y-%m-%d %H:%M}Z: in the roots (GET /tsa/root.pem), certifying "
                           "nothing until the rollover",
                 "retired": "retired"}[r.state]
        typer.echo(f"{r.label} serial {r.serial:x}  {r.not_before:%Y-%m-%d} .. {r.not_after:%Y-%m-%d}  {state}"
                   + (f"  key destroyed {r.key_destroyed_at:%Y-%m-%d %H:%M}Z" if r.key_destroyed_at else "")
                   + f"  {r.valid_units} valid unit(s)"
                   + (f", duties until {r.duties_end_at:%Y-%m-%d}" if r.duties_end_at else ""))
        typer.echo(f"  subject {r.subject}")
        typer.echo(f"  CRL {r.crl or '(no public URL)'}")
        for u in r.units:
            said = f"revoked ({u.reason}) {u.revoked_at:%Y-%m-%d %H:%M}Z" if u.state == "revoked" else u.state
            typer.echo(f"  unit {u.label} serial {u.serial:x}  until {u.not_after:%Y-%m-%d}  {said}"
                       + (f"  key destroyed {u.key_destroyed_at:%Y-%m-%d %H:%M}Z" if u.key_destroyed_at else ""))


key_app = typer.Typer(help="The TSA's private keys: destroy one no duty needs (specs/issuer-keys.md).",
                      no_args_is_help=True)
tsa_app.add_typer(key_app, name="key")


@key_app.command("destroy")
def key_destroy(ref: str = typer.Argument(..., metavar="REF", help="The key: a unit's label (tsa-unit-2), the "
                                          "root's (tsa-root-g1), or a certificate serial (hex)."),
                as_json: bool = typer.Option(False, "--json")) -> None:
    """Destroy a TSA key in the key store, for good, once no duty needs it: a revoked unit's
    (any reason: a key-compromise procedure ends here), or a retired one's (a newer unit
    stamps). Refused (exit 2, nothing changed) for the unit stamping now, the current
    root and a staged one (mcred tsa stage). Its certificate stays (in the registry and in every token it made, which verify as
    before); the time is recorded and audited (tsa.key.destroy). Again: already destroyed,
    exit 0."""
    from issuer.key_destruction import KeyDestructionRefused
    from issuer.keystore import KeyStoreError
    from issuer.tsa import TsaError
    from mcred.cli.text import key_destruction_line

    try:
        done = _authority().destroy_key(ref, actor=cli_actor())
    except (TsaError, KeyDestructionRefused) as exc:
        raise _fail(str(exc), 2, as_json) from None
    except KeyStoreError as exc:
        raise _fail(f"the key store could not destroy it: {exc}", 2, as_json) from None
    if as_json:
        typer.echo(json.dumps(done.to_json(), ensure_ascii=False))
        return
    typer.echo(key_destruction_line(done))


@tsa_app.command("log")
def log(serial: str | None = typer.Option(None, "--serial", help="only this token (its serial in hex, as openssl or the listings print it)"),
        limit: int = typer.Option(50, "--limit", min=1, help="the newest N"),
        as_json: bool = typer.Option(False, "--json")) -> None:
    """What this installation's TSA stamped, newest first: serial, genTime, hash and imprint
    (its audit log; every token is logged before it is handed out)."""
    from sqlalchemy import select

    from issuer.db import AuditEvent, unindexed

    ctx = open_context()
    query = select(AuditEvent).where(AuditEvent.action == "tsa.stamp")  # newest first off ix_issuer_audit_action
    if serial is not None:  # the token's few events off the subject index
        from protocols.certs import SerialError, parse_serial, serial_text

        try:
            wanted = serial_text(parse_serial(serial))
        except SerialError as exc:
            raise typer.BadParameter(str(exc), param_hint="--serial") from None
        query = select(AuditEvent).where(unindexed(AuditEvent.action) == "tsa.stamp", AuditEvent.subject == wanted)
    with ctx.sessions() as s:
        rows = s.scalars(query.order_by(AuditEvent.id.desc()).limit(limit)).all()
        entries = [{"serial": r.subject, **r.detail} for r in rows]
    if as_json:
        print(json.dumps(entries, ensure_ascii=False))
    else:
        for e in entries:
            typer.echo(f"{e['serial']}  {e['gen_time']}  {e['hash_algorithm']}:{e['imprint']}")
        if not entries:
            typer.echo("no token" + (f" with serial {serial}" if serial else ""))
    if serial is not None and not entries:
        raise typer.Exit(1)


def _authority():  # noqa: ANN202
    from mcred.timestamps import time_stamp_authority

    return time_stamp_authority(open_context())


def register(app: typer.Typer) -> None:
    app.add_typer(tsa_app, name="tsa")
