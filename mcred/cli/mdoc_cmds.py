"""``mcred mdoc verify`` and ``mcred inspect`` (issue 2 item 7).

Exit codes of ``mdoc verify``: 0 every check passed, 1 a check failed, 2 unreadable input.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import typer
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_private_key, load_pem_private_key
from rich.console import Console

from mcred.cli.text import cell, checks_table, make_console, markup_safe
from protocols import cbor, certs, mdoc
from protocols.cbor.diag import diagnostic

EXIT_OK, EXIT_FAILED, EXIT_UNREADABLE = 0, 1, 2


class _Unreadable(Exception):
    pass


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise _Unreadable(f"cannot read {what} {path}: {exc.strerror or exc}") from exc


def _load_certs(path: Path) -> list[x509.Certificate]:
    data = _read(path, "trust anchor")
    try:
        return certs.load_any(data)
    except certs.CertificateParseError as exc:
        raise _Unreadable(f"{path}: not a PEM or DER certificate ({exc})") from exc


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    data = _read(path, "reader key")
    try:
        key = load_pem_private_key(data, None) if b"-----BEGIN" in data else load_der_private_key(data, None)
    except (ValueError, TypeError) as exc:
        raise _Unreadable(f"{path}: not an unencrypted PEM/DER private key ({exc})") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise _Unreadable(f"{path}: reader key must be an EC key")
    return key


def _parse_time(value: str | None) -> dt.datetime:
    if value is None:
        return dt.datetime.now(dt.UTC)
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise _Unreadable(f"--at {value!r}: not an ISO 8601 time") from exc
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def _print_result(console: Console, result: mdoc.VerificationResult) -> None:
    console.print(checks_table([c.to_json() for c in result.checks], title="checks"))
    for doc in result.to_json()["documents"]:
        console.print(f"[bold]{markup_safe(doc['docType'])}[/]")
        for ns, elements in doc["elements"].items():
            console.print(cell(f"  {ns}"))
            for ident, value in elements.items():
                text = json.dumps(value, ensure_ascii=False)
                console.print(cell(f"    {ident}: {text if len(text) < 100 else text[:97] + '...'}"))
        for answer in doc.get("ageOver", []):  # what it says of each age_over_NN asked (ISO/IEC 18013-5 7.2.5)
            console.print(cell(f"  {answer['namespace']} / {answer['requested']} asked: {answer['meaning']}"))
    console.print("[green]VALID[/]" if result.valid else "[red]INVALID[/]")


def verify_cmd(
    response: Path = typer.Argument(..., help="DeviceResponse, a saved presentation (mcred present --save: its "
                                                "DeviceResponse with its SessionTranscript and reader key), or an "
                                                "IssuerSigned on its own (CBOR file, or its base64url text as "
                                                "OpenID4VCI/VP carry it)."),
    trust_anchor: list[Path] = typer.Option(..., "--trust-anchor", "--trust", help="IACA certificate (PEM or DER; a PEM bundle, as mcred export iaca writes it, gives each); repeatable. --trust is the same option, as mcred verify names it."),
    session_transcript: Path | None = typer.Option(None, "--session-transcript", help="CBOR SessionTranscript, with or without its tag 24."),
    reader_key: Path | None = typer.Option(None, "--reader-key", help="Reader ephemeral private key (PEM), needed for a deviceMac."),
    at: str | None = typer.Option(None, "--at", help="Verification time (ISO 8601); default now."),
    doc_type: str | None = typer.Option(None, "--doc-type", help="For an IssuerSigned: the docType it must be "
                                                                     "(default: the MSO's)."),
    age_over: list[str] = typer.Option([], "--age-over", help="An age_over_NN the request asked (NN or age_over_NN; "
                                       "at most two): report what each document says of it (ageOver, ISO/IEC "
                                       "18013-5 7.2.5)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Verify a DeviceResponse and print every check and the disclosed elements.

    An IssuerSigned on its own (as an issuer hands it to a wallet) gets the issuer-side
    checks: chain, issuer signature, MSO, docType, digests, validity. There is no
    presentation in it, so no device authentication is checked or listed."""
    from mcred.present_saved import age_over_asked, with_age_over

    console = make_console()
    try:
        try:
            asked = age_over_asked(age_over)
        except ValueError as exc:
            raise _Unreadable(str(exc)) from None
        anchors = [c for p in trust_anchor for c in _load_certs(p)]
        transcript = None
        if session_transcript is not None:
            try:
                transcript = mdoc.SessionTranscript.decode(_read(session_transcript, "session transcript"))
            except mdoc.MdocError as exc:
                raise _Unreadable(f"{session_transcript}: {exc}") from exc
        key = _load_key(reader_key) if reader_key is not None else None
        now = _parse_time(at)
        data = cbor.from_text_or_raw(_read(response, "response"))
        issuer_signed = mdoc.is_issuer_signed(data)
        if not issuer_signed:  # mcred present --save / reader --save-dir: the response and its transcript
            from mcred.present_saved import read_saved

            try:
                saved = read_saved(data)
            except (mdoc.MdocError, ValueError, TypeError) as exc:
                raise _Unreadable(f"{response}: a saved transcript whose session transcript or reader key "
                                  f"does not decode: {exc}") from exc
            if saved is not None:
                data, saved_transcript, saved_key = saved
                transcript, key = transcript or saved_transcript, key or saved_key
        try:
            if issuer_signed:
                result = mdoc.verify_issuer_signed(data, trust_anchors=anchors, now=now, doc_type=doc_type)
            else:
                result = mdoc.verify_device_response(
                    data, trust_anchors=anchors, session_transcript=transcript, now=now, reader_private_key=key)
        except mdoc.MdocError as exc:
            raise _Unreadable(f"{response}: {exc}") from exc
        result = with_age_over(result, asked)
    except _Unreadable as exc:
        if as_json:
            print(json.dumps({"valid": False, "error": str(exc), "checks": [], "documents": []}))
        else:
            console.print(f"[red]unreadable input:[/] {markup_safe(exc)}", markup=True)
        raise typer.Exit(EXIT_UNREADABLE) from None
    if as_json:
        print(json.dumps(result.to_json(), ensure_ascii=False))
    else:
        if issuer_signed:
            console.print("IssuerSigned on its own: issuer-side checks only (no presentation, so no device "
                          "authentication)")
        _print_result(console, result)
    raise typer.Exit(EXIT_OK if result.valid else EXIT_FAILED)


def inspect_cmd(file: Path = typer.Argument(..., help="Any CBOR file (DeviceResponse, MSO, SessionData...), or "
                                                       "its base64url text.")) -> None:
    """Print CBOR diagnostic notation, tag 24 contents unwrapped."""
    try:
        value = cbor.loads(cbor.from_text_or_raw(file.read_bytes()))
    except (OSError, cbor.CborError) as exc:
        make_console(stderr=True).print(f"[red]unreadable input:[/] {markup_safe(exc)}")
        raise typer.Exit(EXIT_UNREADABLE) from None
    print(diagnostic(value))


def register(app: typer.Typer) -> None:
    mdoc_app = typer.Typer(help="ISO 18013-5 mdoc tools.", no_args_is_help=True)
    mdoc_app.command("verify")(verify_cmd)
    app.add_typer(mdoc_app, name="mdoc")
    app.command("inspect")(inspect_cmd)
