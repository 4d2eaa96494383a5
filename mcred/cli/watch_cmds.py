"""``mcred jpki watch add|import|sweep|relink|list|events|remove``: the JPKI relying party's
revocation watch over its customers' certificates (reader.rp_watch; specs/presentation.md
section 17)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import typer

from mcred.cli.state import cli_actor
from mcred.cli.text import fail, listing, markup_safe

watch_app = typer.Typer(
    help="The relying party's revocation watch (失効情報の活用): its customers' JPKI "
         "certificates, swept against the CRLs or OCSP; each change (death or moving abroad, "
         "renewal, loss, hold lifted, a revocation amended to keyCompromise or to an earlier "
         "invalidity date, expiry) recorded once with what it means.",
    no_args_is_help=True)

DB = typer.Option(None, "--db", help="The relying party's database (SQLAlchemy URL, e.g. "
                  "sqlite:///rp.db or postgresql+psycopg://...; its rp_watch tables are created). "
                  "Default: this installation's database.")
ROOTS = typer.Option(None, "--roots", help="PEM bundle of the trusted JPKI roots (both "
                     "purposes). Default: this installation's, every generation.")
JSON = typer.Option(False, "--json")


def _open(db: str | None, roots: Path | None):  # noqa: ANN202 - a RevocationWatch
    from mcred.cli.state import open_context
    from mcred.db import make_engine, migrate
    from protocols.certs import CertificateParseError
    from reader.relying_party import load_roots
    from reader.rp_watch import RevocationWatch

    try:
        trust = load_roots(roots.read_bytes()) if roots is not None else None
    except (CertificateParseError, OSError) as exc:
        raise typer.BadParameter(f"{roots}: {exc}", param_hint="--roots") from None
    ctx = None
    if db is None:
        ctx = open_context()
        engine = ctx.engine
    else:
        try:
            engine = make_engine(db)
            migrate(engine, "reader@head")
        except Exception as exc:  # noqa: BLE001 - a URL SQLAlchemy cannot use, a server not there
            raise typer.BadParameter(f"{db}: {type(exc).__name__}: {exc}", param_hint="--db") from None
    if trust is None:
        from mcred.jpki_flow import jpki_issuer

        issuer = jpki_issuer(ctx or open_context())
        return RevocationWatch(engine, lambda: [*issuer.roots("sign"), *issuer.roots("auth")])
    return RevocationWatch(engine, trust)


def _short(when: dt.datetime | None) -> str | None:
    return f"{when:%Y-%m-%d %H:%M}" if when is not None else None


@watch_app.command("add")
def add(ref: str = typer.Argument(..., help="Your reference for the customer (a policy or "
                                  "account number), 1 to 128 printable characters."),
        certificate: Path | None = typer.Option(None, "--certificate", exists=True, dir_okay=False,
                                                help="The customer's JPKI certificate (PEM or DER)."),
        signature: Path | None = typer.Option(None, "--signature", exists=True, dir_okay=False,
                                              help="Or the customer's CMS signature (.p7s) over "
                                              "--content (a consent, an application): verified "
                                              "in full, revocation included, and its signing "
                                              "certificate watched."),
        content: Path | None = typer.Option(None, "--content", exists=True, dir_okay=False),
        db: str | None = DB, roots: Path | None = ROOTS, as_json: bool = JSON) -> None:
    """Watch a customer's certificate (it must chain to a trusted root and not be expired)."""
    from reader.rp_watch import WatchError

    if (certificate is None) == (signature is None):
        raise typer.BadParameter("give --certificate, or --signature with --content")
    if (signature is None) != (content is None):
        raise typer.BadParameter("--signature and --content go together", param_hint="--content")
    watch = _open(db, roots)
    if signature is not None:
        from reader.relying_party import verify

        verdict = verify(content.read_bytes(), signature.read_bytes(), roots=watch.roots(),
                         slot="sign", revocation="auto")
        if not verdict["valid"]:
            failed = "; ".join(f"{c['name']}: {c['reason']}" for c in verdict["checks"] if not c["passed"])
            raise fail(f"the signature is not valid ({failed}): nothing watched", as_json)
        from cryptography.hazmat.primitives.serialization import Encoding

        from protocols.jpki.cms import verify_detached_signature

        der = verify_detached_signature(signature.read_bytes(), content.read_bytes()) \
            .signer_certificate.public_bytes(Encoding.DER)
    else:
        der = certificate.read_bytes()
    try:
        entry, added = watch.add(ref, der)
    except WatchError as exc:
        raise fail(str(exc), as_json) from None
    if as_json:
        typer.echo(json.dumps({**entry.to_dict(), "added": added}, ensure_ascii=False))
    else:
        what = "added" if added else "already watched"
        typer.echo(f"{what}: {entry.ref} {entry.purpose} certificate {entry.serial} "
                   f"(until {entry.not_after:%Y-%m-%d}), {entry.status}")


@watch_app.command("import")
def import_(csv_file: Path = typer.Argument(..., exists=True, dir_okay=False, help="CSV with a header "
                                            "row: ref,certificate (a PEM or DER file, relative to the CSV's "
                                            "directory)."),
            db: str | None = DB, roots: Path | None = ROOTS, as_json: bool = JSON) -> None:
    """Put many customers' certificates on the list at once. A line that cannot be added (no such
    file, not a trusted JPKI certificate, a bad reference) is reported with its reason and the
    others are added. Exit 0 when every line was added or already watched, 1 otherwise."""
    import csv

    from reader.rp_watch import WatchError

    watch = _open(db, roots)
    try:
        with csv_file.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or not {"ref", "certificate"} <= set(reader.fieldnames):
                raise fail(f"{csv_file}: the header row must name ref and certificate", as_json)
            lines = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise fail(f"{csv_file}: {exc}", as_json) from None
    results = []
    for number, line in enumerate(lines, start=2):
        ref, name = line.get("ref") or "", line.get("certificate") or ""
        try:
            path = csv_file.parent / name
            entry, added = watch.add(ref, path.read_bytes())
            results.append({"line": number, "ref": ref, "result": "added" if added else "already watched",
                            "serial": entry.serial})
        except (WatchError, OSError) as exc:
            results.append({"line": number, "ref": ref, "result": "refused",
                            "reason": exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)})
    refused = [r for r in results if r["result"] == "refused"]
    if as_json:
        typer.echo(json.dumps(results, ensure_ascii=False))
    else:
        from mcred.cli.text import make_console

        console = make_console()
        for r in refused:
            console.print(f"  [yellow]line {r['line']}[/] {markup_safe(r['ref'])}: {markup_safe(r['reason'])}",
                          highlight=False)
        added = sum(r["result"] == "added" for r in results)
        console.print(f"{added} added, {len(results) - added - len(refused)} already watched, "
                      f"{len(refused)} refused", highlight=False)
    raise typer.Exit(1 if refused else 0)


@watch_app.command("sweep")
def sweep(via: str = typer.Option("crl", "--via", help="crl (each partition's CRL fetched "
                                  "once: many customers) or ocsp (one request per certificate)."),
          refs: list[str] = typer.Option([], "--ref", help="Only this customer's certificates "
                                         "(repeatable); default: the whole list."),
          db: str | None = DB, roots: Path | None = ROOTS, as_json: bool = JSON) -> None:
    """Ask about every watched certificate whose status can still change; print what changed.
    Exit 0 when every one was judged, 1 when some could not be (their status is kept)."""
    from mcred.cli.text import make_console
    from reader.rp_watch import VIA

    if via not in VIA:
        raise typer.BadParameter(f"{via!r}: one of {', '.join(VIA)}", param_hint="--via")
    from reader.rp_watch import WatchError

    try:
        report = _open(db, roots).sweep(via, refs=refs or None)
    except WatchError as exc:
        raise fail(str(exc), as_json) from None
    if as_json:
        typer.echo(json.dumps(report.to_dict(), ensure_ascii=False))
    else:
        console = make_console()
        console.print(f"swept {report.asked} certificate(s) by {via.upper()} at "
                      f"{report.at:%Y-%m-%d %H:%M:%S}Z: {len(report.changes)} change(s)")
        for c in report.changes:
            since = _short(c.invalid_since)
            why = ", ".join(x for x in (c.reason, _short(c.revoked_at),
                                        f"invalid since {since}" if since else None) if x)
            console.print(f"  {markup_safe(c.ref)}  {c.purpose} {c.serial[:12]}  "
                          f"{c.before or 'new'} -> [bold]{c.after}[/]{f' ({why})' if why else ''}: "
                          f"{markup_safe(c.meaning)}", highlight=False)
        for u in report.unjudged:
            console.print(f"  [yellow]not judged:[/] {markup_safe(u.ref)}  {u.serial[:12]}: "
                          f"{markup_safe(u.problem)}", highlight=False)
        console.print("now: " + (", ".join(f"{n} {s}" for s, n in report.counts.items())
                                 or "nothing watched"), highlight=False)
    raise typer.Exit(0 if report.complete else 1)


@watch_app.command("relink")
def relink(issuer: str | None = typer.Option(None, "--issuer", help="The issuer service's URL: ask its "
                                             "linkage service over HTTP with --token (scope reader). "
                                             "Default: this installation's issuer."),
           token: str | None = typer.Option(None, "--token", envvar="MCRED_API_TOKEN",
                                            help="Bearer token for --issuer."),
           refs: list[str] = typer.Option([], "--ref", help="Only this customer's certificates "
                                          "(repeatable); default: the whole list."),
           db: str | None = DB, roots: Path | None = ROOTS, as_json: bool = JSON) -> None:
    """Follow replaced user-authentication certificates (revoked, on hold or expired) to the
    valid one the issuer's linkage service (利用者証明用電子証明書の新旧紐付け) names after each
    (a new phone, a renewed card), and watch that one under the same reference. Exit 1 when
    an answer was refused (it does not fit), 0 otherwise."""
    from reader.rp_watch import WatchError

    if issuer:
        from mcred.cli.consent_cmds import ask_linkage

        def ask(serials: list[str]) -> list[dict]:
            return ask_linkage(issuer, token, serials, as_json)
    else:
        from issuer.jpki import linkage as lk
        from mcred.cli.state import open_context

        sessions = open_context().sessions

        def ask(serials: list[str]) -> list[dict]:
            return lk.answer(sessions, serials, relying_party="cli", actor=cli_actor())["links"]
    try:
        found = _open(db, roots).relink(ask, refs=refs or None)
    except WatchError as exc:
        raise fail(str(exc), as_json) from None
    if as_json:
        listing([r.to_dict() for r in found], {}, True)
    else:
        listing([{"ref": r.ref, "serial": r.serial[:12], "outcome": r.outcome,
                  "successor": r.successor[:12] if r.successor else None, "problem": r.problem} for r in found],
                {"ref": "ref", "serial": "old certificate", "outcome": "outcome",
                 "successor": "now watched", "problem": "problem"}, False)
    raise typer.Exit(1 if any(r.outcome == "refused" for r in found) else 0)


@watch_app.command("list")
def list_(ref: str | None = typer.Option(None, "--ref"),
          status: str | None = typer.Option(None, "--status", help="unchecked, good, hold, "
                                            "revoked, expired or unknown"),
          db: str | None = DB, roots: Path | None = ROOTS, as_json: bool = JSON) -> None:
    """The watched certificates with their last known status (as of the evidence's time)."""
    from reader.rp_watch import WatchError

    try:
        found = _open(db, roots).entries(ref, status)
    except WatchError as exc:
        raise fail(str(exc), as_json) from None
    if as_json:
        listing([w.to_dict() for w in found], {}, True)
        return
    listing([{"ref": w.ref, "cert": f"{w.purpose} {w.serial[:12]}", "status": w.status,
              "reason": w.reason, "invalid_since": _short(w.invalid_since), "as_of": _short(w.as_of),
              "until": f"{w.not_after:%Y-%m-%d}",
              "successor": w.successor[:12] if w.successor else None, "problem": w.problem} for w in found],
            {"ref": "ref", "cert": "certificate", "status": "status", "reason": "reason",
             "invalid_since": "invalid since", "as_of": "as of", "until": "until", "successor": "linked to", "problem": "last problem"}, False)


@watch_app.command("events")
def events(ref: str | None = typer.Option(None, "--ref"),
           since: dt.datetime | None = typer.Option(None, "--since", help="only changes seen at "
                                                    "or after this time (UTC unless it says)"),
           db: str | None = DB, roots: Path | None = ROOTS, as_json: bool = JSON) -> None:
    """Every change recorded, oldest first: what was learnt about whom, when, from where."""
    from reader.rp_watch import WatchError

    try:
        found = _open(db, roots).events(ref, since)
    except WatchError as exc:
        raise fail(str(exc), as_json) from None
    if as_json:
        listing([c.to_dict() for c in found], {}, True)
        return
    listing([{"seen": _short(c.seen_at), "ref": c.ref, "cert": f"{c.purpose} {c.serial[:12]}",
              "change": f"{c.before or 'new'} -> {c.after}", "reason": c.reason,
              "invalid_since": _short(c.invalid_since), "source": c.source}
             for c in found],
            {"seen": "seen", "ref": "ref", "cert": "certificate", "change": "change",
             "reason": "reason", "invalid_since": "invalid since", "source": "from"}, False)


@watch_app.command("remove")
def remove(ref: str = typer.Argument(...),
           serial: str | None = typer.Option(None, "--serial", help="only this certificate (hex)"),
           db: str | None = DB, roots: Path | None = ROOTS, as_json: bool = JSON) -> None:
    """Stop watching a customer's certificates (what was learnt stays in the events)."""
    from reader.rp_watch import WatchError

    try:
        n = _open(db, roots).remove(ref, serial)
    except WatchError as exc:
        raise fail(str(exc), as_json) from None
    typer.echo(json.dumps({"removed": n}) if as_json else f"removed {n}")
