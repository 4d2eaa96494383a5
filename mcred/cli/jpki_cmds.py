"""``mcred jpki sign|verify|setup|stage|rollover|root list|pin``, ``mcred revoke``, ``mcred release``,
``mcred serve`` and the JPKI exports (``jpki-root``, ``jpki-cert``, ``crl``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from mcred.cli.consent_cmds import consent_app, linkage
from mcred.cli.export_cmds import export_app
from mcred.cli.ota_cli import (
    CONNECT_TIMEOUT,
    LISTEN,
    OVER_THE_AIR,
    PUBLIC_URL,
    SESSION_ID,
    SSL_CERTFILE,
    SSL_KEYFILE,
    over_the_air_options,
)
from mcred.cli.phone_cmds import tsm_tracing
from mcred.cli.state import (
    check_can_listen,
    cli_actor,
    open_context,
    out_path,
    parse_invalid_since,
    public_url_mismatch,
)
from mcred.cli.text import check_line, fail, revocation_line, secret_lines
from mcred.cli.watch_cmds import watch_app
from reader.text import printable

jpki_app = typer.Typer(help="JPKI signing certificates: sign with a phone, verify as a relying party.",
                       no_args_is_help=True)

SLOT = typer.Option("sign", "--slot", help="sign (signing certificate) or auth (user authentication).")


def _issuer():
    from mcred.jpki_flow import jpki_issuer

    return jpki_issuer(open_context())


def _tsa():  # noqa: ANN202
    from mcred.timestamps import time_stamp_authority

    return time_stamp_authority(open_context())


def _check_slot(slot: str) -> str:
    if slot not in ("sign", "auth"):
        raise typer.BadParameter(f"slot {slot!r}: use sign or auth", param_hint="--slot")
    return slot


def _write(out: Path, der: bytes, kind: str) -> None:
    """PEM when the file name ends in .pem, DER otherwise."""
    if out.suffix.lower() == ".pem":
        if kind == "crl":
            data = x509.load_der_x509_crl(der).public_bytes(Encoding.PEM)
        else:
            data = x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM)
    else:
        data = der
    out.write_bytes(data)
    typer.echo(f"wrote {out} ({len(data)} bytes)")


def _key_type(value: str):  # noqa: ANN202 - a protocols.jpki.profile.KeyType
    from protocols.jpki.profile import KeyType

    try:
        return KeyType(value)
    except ValueError:  # was a traceback
        raise typer.BadParameter(f"{value!r}: rsa2048 or p384", param_hint="--key-type") from None


def _generation(gen) -> dict:  # noqa: ANN001 - an issuer.jpki root generation
    return {"label": gen.label, "algorithm": gen.algorithm, "key_id": gen.key_id.hex()}


@jpki_app.command("setup")
def setup(key_type: str = typer.Option("rsa2048", help="rsa2048 or p384"),
          as_json: bool = typer.Option(False, "--json", help="Print {slot: {label, algorithm, key_id}}.")) -> None:
    """Create the two root CAs and their OCSP responders (idempotent)."""
    made = _issuer().setup(_key_type(key_type))
    if as_json:
        typer.echo(json.dumps({purpose.value: _generation(gen) for purpose, gen in made.items()}))
        return
    for purpose, gen in made.items():
        typer.echo(f"{purpose.value}: {gen.label} ({gen.algorithm}) key id {gen.key_id.hex()}")


@jpki_app.command("rollover")
def rollover(slot: str = SLOT,
             key_type: str | None = typer.Option(None, help="rsa2048 or p384: the key of a generation made here "
                                                 "(default rsa2048); a staged generation starts with its own"),
             as_json: bool = typer.Option(False, "--json", help="Print {slot, label, algorithm, key_id, serial, "
                                          "not_after, previous, staged_since}.")) -> None:
    """Start the next root key generation of a slot (same name; older ones stay published).

    The staged generation (mcred jpki stage) when there is one: relying parties that took the
    trust bundle since it was staged already trust its certificates. Else a new one, and new
    certificates chain to it at once: give relying parties the bundle (mcred export jpki-root,
    or /trust/jpki-sign-root.pem, /trust/jpki-auth-root.pem) before issuing."""
    from issuer.jpki.errors import StagedRootMismatch
    from issuer.keystore import KeyStoreError

    _check_slot(slot)
    wanted = _key_type(key_type) if key_type is not None else None
    try:
        done = _issuer().rollover_detail(slot, wanted, actor=cli_actor())
    except StagedRootMismatch as exc:  # nothing was started
        raise fail(str(exc), as_json) from None
    except KeyStoreError as exc:
        raise fail(f"the key store could not make the new root's key: {exc}", as_json) from None
    gen = done.generation
    if as_json:
        typer.echo(json.dumps(done.to_json()))
        return
    if done.staged_since is not None:
        typer.echo(f"{slot}: staged generation {gen.label} started, key id {gen.key_id.hex()}; it has been in the "
                   f"trust bundle since {done.staged_since:%Y-%m-%d %H:%M} UTC: relying parties that took the bundle "
                   "since then trust its certificates")
        return
    typer.echo(f"{slot}: new generation {gen.label} key id {gen.key_id.hex()}")
    typer.echo(f"relying parties need it before they see its certificates: mcred export jpki-root --slot {slot} "
               f"--out FILE.pem, or /trust/jpki-{slot}-root.pem (mcred jpki stage publishes the next generation "
               "ahead of its use)")


@jpki_app.command("stage")
def stage(slot: str = SLOT,
          key_type: str = typer.Option("rsa2048", help="rsa2048 or p384"),
          as_json: bool = typer.Option(False, "--json", help="Print {slot, label, algorithm, key_id, serial, "
                                       "not_after, current}.")) -> None:
    """Make the next root key generation of a slot and publish it in the trust bundle, without
    starting it.

    The issuing generation goes on issuing; relying parties that take the bundle (mcred export
    jpki-root, or /trust/jpki-sign-root.pem, /trust/jpki-auth-root.pem) from now on already
    trust the staged generation when mcred jpki rollover starts it, so its first certificates
    verify everywhere at once. One staged generation per slot at a time."""
    from issuer.jpki.errors import CaNotSetUp, JpkiRootAlreadyStaged
    from issuer.keystore import KeyStoreError

    _check_slot(slot)
    try:
        done = _issuer().stage(slot, _key_type(key_type), actor=cli_actor())
    except (JpkiRootAlreadyStaged, CaNotSetUp) as exc:  # nothing was made
        raise fail(str(exc), as_json) from None
    except KeyStoreError as exc:
        raise fail(f"the key store could not make the staged root's key: {exc}", as_json) from None
    if as_json:
        typer.echo(json.dumps(done.to_json()))
        return
    gen = done.generation
    typer.echo(f"{slot}: staged generation {gen.label} ({gen.algorithm}) key id {gen.key_id.hex()} until "
               f"{gen.certificate.not_valid_after_utc.date().isoformat()}; {done.current} goes on issuing")
    typer.echo(f"give relying parties the trust bundle now (mcred export jpki-root --slot {slot} --out FILE.pem, or "
               f"/trust/jpki-{slot}-root.pem), then start it: mcred jpki rollover --slot {slot}")


root_app = typer.Typer(help="The JPKI root generations of both slots, with their OCSP responders: list.",
                       no_args_is_help=True)
jpki_app.add_typer(root_app, name="root")


@root_app.command("list")
def root_list(slot: str = typer.Option("all", "--slot", help="sign, auth or all (both slots)."),
              as_json: bool = typer.Option(False, "--json", help="Print {\"roots\": [...]}, as GET /trust/jpki-roots "
                                           "answers.")) -> None:
    """Every root generation of each slot, oldest first (as the trust bundle lists them):
    serial, subject, validity, state (issuing; staged: in the trust bundle, issuing nothing
    until mcred jpki rollover starts it; retired), when its key was destroyed, how many valid
    certificates it issued, until when it has duties (its CRLs, its OCSP responder: the end
    of the last certificate it issued that has not expired), its CRLs and its OCSP
    responders. From the registry alone: the key store is not opened, nothing is made."""
    from issuer.jpki.listing import list_roots
    from mcred.jpki_flow import jpki_registry

    if slot not in ("sign", "auth", "all"):
        raise typer.BadParameter(f"slot {slot!r}: use sign, auth or all", param_hint="--slot")
    roots = list_roots(jpki_registry(open_context()), ("sign", "auth") if slot == "all" else (slot,))
    if as_json:
        typer.echo(json.dumps({"roots": [r.to_json() for r in roots]}, ensure_ascii=False))
        return
    if not roots:
        typer.echo("no JPKI root yet: made at the first provisioning (or mcred jpki setup)")
    for r in roots:
        state = {"issuing": "issuing",
                 "staged": f"staged {r.created_at:%Y-%m-%d %H:%M}Z: in the trust bundle, issuing nothing until "
                           f"mcred jpki rollover --slot {r.slot}",
                 "retired": "retired"}[r.state]
        typer.echo(f"{r.slot} {r.label} ({r.algorithm}) serial {r.serial:x}  {r.not_before:%Y-%m-%d} .. "
                   f"{r.not_after:%Y-%m-%d}  {state}"
                   + (f"  key destroyed {r.key_destroyed_at:%Y-%m-%d %H:%M}Z" if r.key_destroyed_at else "")
                   + f"  {r.valid_certificates} valid certificate(s)"
                   + (f", duties until {r.duties_end_at:%Y-%m-%d}" if r.duties_end_at else ""))
        typer.echo(f"  subject {printable(r.subject)}")
        typer.echo(f"  CRLs: {len(r.crls)} partition(s)" + (f": {', '.join(r.crls[:3])}" if r.crls else "")
                   + (f" and {len(r.crls) - 3} more" if len(r.crls) > 3 else ""))
        for o in r.responders:
            typer.echo(f"  OCSP {o.label} serial {o.serial:x}  until {o.not_after:%Y-%m-%d}  {o.state}"
                       + (f"  key destroyed {o.key_destroyed_at:%Y-%m-%d %H:%M}Z" if o.key_destroyed_at else ""))
        if not r.responders:
            typer.echo("  OCSP: no responder" + (" (made when the rollover starts it)" if r.state == "staged" else ""))


key_app = typer.Typer(help="The private keys of the JPKI roots and their OCSP responders: destroy one no duty "
                      "needs (specs/issuer-keys.md).", no_args_is_help=True)
jpki_app.add_typer(key_app, name="key")


@key_app.command("destroy")
def key_destroy(ref: str = typer.Argument(..., metavar="REF", help="The key: a root generation's label "
                                          "(jpki-sign-root-g1), an OCSP responder's (jpki-sign-root-g1-ocsp-2), "
                                          "or its certificate's serial (hex)."),
                as_json: bool = typer.Option(False, "--json")) -> None:
    """Destroy a JPKI key in the key store, for good, once no duty needs it: an older root
    generation's (mcred jpki rollover leaves them) once every certificate it issued has
    expired, an OCSP responder's once a newer one answers for its root generation, or its
    generation has ended or has nothing left to answer for. Refused (exit 2, nothing changed) for the issuing root generation, a
    staged one (mcred jpki stage), the responder answering now, and an older generation with certificates that have not
    expired (the error says when the last one ends). Its certificate stays (a root's in the
    trust bundle, mcred export jpki-root); the time is recorded and audited
    (jpki.key.destroy). Again: already destroyed, exit 0."""
    from issuer.jpki.errors import UnknownJpkiKey
    from issuer.key_destruction import KeyDestructionRefused
    from issuer.keystore import KeyStoreError
    from mcred.cli.text import fail, key_destruction_line

    try:
        done = _issuer().destroy_key(ref, actor=cli_actor())
    except (UnknownJpkiKey, KeyDestructionRefused) as exc:
        raise fail(str(exc), as_json, 2) from None
    except KeyStoreError as exc:
        raise fail(f"the key store could not destroy it: {exc}", as_json, 2) from None
    if as_json:
        typer.echo(json.dumps(done.to_json(), ensure_ascii=False))
        return
    typer.echo(key_destruction_line(done))


@jpki_app.command("sign")
def sign(file: Path = typer.Argument(..., exists=True, dir_okay=False),
         phone: str = typer.Option(..., "--phone"), slot: str = SLOT,
         pin_file: Path = typer.Option(..., "--pin-file", exists=True, dir_okay=False),
         out: Path | None = typer.Option(None, "--out", callback=out_path,
                                         help="default: FILE.p7s; with --pdf, FILE's name with .signed.pdf; "
                                         "with --xml, .signed.xml"),
         pdf: bool = typer.Option(False, "--pdf", help="Sign inside the PDF FILE (PAdES baseline B-B, an "
                                  "incremental update: what was there stays byte for byte) instead of a "
                                  "detached .p7s; needs pip install 'mcred[pdf]'."),
         xml: bool = typer.Option(False, "--xml", help="Sign inside the XML document FILE: an enveloped "
                                  "XML signature over the whole document (as e-Gov and e-Tax filings are "
                                  "signed); needs pip install 'mcred[xml]'."),
         xades: bool = typer.Option(False, "--xades", help="With --xml: XAdES baseline B-B (signed "
                                    "properties: signing time, the signing certificate's digest); with "
                                    "--timestamp or --tsa, B-T."),
         field: str | None = typer.Option(None, "--field", help="With --pdf: the signature field's name "
                                          "(default Signature<n>, the next free)."),
         reason: str | None = typer.Option(None, "--reason", help="With --pdf: why it is signed, e.g. 契約"),
         location: str | None = typer.Option(None, "--location", help="With --pdf: where it is signed."),
         ltv: bool = typer.Option(False, "--ltv", help="Also embed the validation data (fetched now: the "
                                  "chain and the OCSP answer; with a time-stamp, its TSA unit's CRL) so the "
                                  "signature can be checked later without the network: in the PDF (--pdf), "
                                  "in the detached signature's SignedData (with a time-stamp), or in the XAdES "
                                  "signature's RevocationValues (--xml --xades, with a time-stamp: B-LT)."),
         timestamp: bool = typer.Option(False, "--timestamp", help="Add a signature time-stamp (RFC 3161) "
                                        "from this installation's TSA: CAdES-T, PAdES B-T (B-LT with "
                                        "--ltv), or XAdES B-T (--xml --xades); the signature then stays valid after the certificate is "
                                        "revoked (an address change, a handover) or expires."),
         tsa: str | None = typer.Option(None, "--tsa", help="As --timestamp, from the RFC 3161 TSA at this "
                                        "URL (e.g. <issuer>/tsa, or any public TSA)."),
         tsa_root: Path | None = typer.Option(None, "--tsa-root", exists=True, dir_okay=False,
                                              help="With --tsa: the TSA's root (PEM); its token is then "
                                              "verified before it is embedded (without it, only the "
                                              "imprint and the nonce are checked)."),
         lta: bool = typer.Option(False, "--lta", help="With --pdf --ltv and a time-stamp: then a document "
                                  "time-stamp over the whole file (PAdES B-LTA), the long-term form."),
         as_json: bool = typer.Option(False, "--json", help="Print {\"out\", \"bytes\", \"phone\", \"slot\", "
                                      "\"form\"}: the file written.")) -> None:
    """Sign FILE with the phone's SE: CMS detached signature (DER, .p7s), or inside a PDF (--pdf)
    or an XML document (--xml)."""
    import wallet_sim
    from mcred.jpki_flow import SecretFormatError, SeError, sign_with_se
    from mcred.timestamps import TimestampError, ValidationDataError

    _check_slot(slot)
    if not pdf and (field or reason or location or lta):
        raise typer.BadParameter("--field, --reason, --location and --lta are for a PDF: add --pdf")
    if xades and not xml:
        raise typer.BadParameter("--xades is a form of XML signature: add --xml")
    if xml and pdf:
        raise typer.BadParameter("--xml signs inside the XML document: no --pdf")
    if xml and (timestamp or tsa or ltv) and not xades:
        raise typer.BadParameter("a signature time-stamp (and validation data) on an XML signature is XAdES-T "
                                 "(-LT): add --xades")
    stamper = _stamper(timestamp, tsa, tsa_root)
    if ltv and not pdf and stamper is None:
        raise typer.BadParameter(f"--ltv on {'an XML' if xml else 'a detached'} signature needs its time-stamp "
                                 "(--timestamp or --tsa): "
                                 "the validation data speaks for the time the signature was made")
    if lta and not (ltv and stamper):
        raise typer.BadParameter("--lta (PAdES B-LTA) needs --ltv and a time-stamp (--timestamp or --tsa)")
    if (pdf or xml) and slot != "sign":
        raise typer.BadParameter("documents are signed with the signing certificate (署名用電子証明書); the "
                                 "user-authentication certificate proves who logs in", param_hint="--slot")
    pin = pin_file.read_bytes().strip()
    default = (file.with_name(file.stem + ".signed.pdf") if pdf else file.with_name(file.stem + ".signed.xml")
               if xml else file.with_name(file.name + ".p7s"))
    target = out_path(out or default)  # the default too, before the SE signs
    try:
        if pdf:
            from mcred.jpki_pdf import PdfSigningError, sign_pdf_with_se

            try:
                signed = sign_pdf_with_se(_pin_transmit(phone, as_json), pin, file.read_bytes(), field=field,
                                       reason=reason, location=location,
                                       ltv_roots=_issuer().roots("sign") if ltv else None, stamper=stamper,
                                       lta=lta)
            except PdfSigningError as exc:
                raise fail(f"{file}: {exc}", as_json) from None
        elif xml:
            from mcred.jpki_flow import sign_xml_with_se
            from protocols.jpki.xmlsig import XmlSignatureError

            try:
                signed = sign_xml_with_se(_pin_transmit(phone, as_json), pin, file.read_bytes(), xades=xades,
                                          stamper=stamper)
                if ltv:
                    from mcred.timestamps import add_xml_validation_data

                    signed = add_xml_validation_data(signed, roots=_issuer().roots("sign"), tsa_roots=stamper.roots)
            except XmlSignatureError as exc:
                raise fail(f"{file}: {exc}", as_json) from None
        else:
            signed, _cert = sign_with_se(_pin_transmit(phone, as_json), slot, pin, file.read_bytes())
            if stamper is not None:
                signed = stamper.stamp_signature(signed)
            if ltv:
                from mcred.timestamps import add_validation_data

                signed = add_validation_data(signed, file.read_bytes(), roots=_issuer().roots(slot),
                                             tsa_roots=stamper.roots)
    except TimestampError as exc:
        raise fail(f"no time-stamp: {exc}", as_json) from None
    except ValidationDataError as exc:
        raise fail(f"no validation data (--ltv): {exc}", as_json) from None
    except SecretFormatError as exc:
        raise fail(f"--pin-file {pin_file}: {exc}", as_json) from None
    except (SeError, wallet_sim.SeError) as exc:  # the SE refused, or the phone (its SE image) is not there
        # the SE's refusal (a wrong secret, a locked one) is the operation failing, exit 1, as
        # for jpki auth; a phone that cannot be opened is unusable input, exit 2
        raise fail(str(exc), as_json, 1 if isinstance(exc, SeError) else 2) from None
    try:
        target.write_bytes(signed)
    except OSError as exc:
        raise fail(f"--out {target}: {exc.strerror or exc}", as_json) from None
    if as_json:
        typer.echo(json.dumps({"out": str(target), "bytes": len(signed), "phone": phone, "slot": slot,
                               "form": "pdf" if pdf else "xml" if xml else "cms"}, ensure_ascii=False))
        return
    typer.echo(f"wrote {target} ({len(signed)} bytes)")


def _stamper(timestamp: bool, tsa: str | None, tsa_root: Path | None):  # noqa: ANN202 - a Stamper or None
    """Where ``mcred jpki sign`` takes its time-stamp: the installation's TSA, a URL, or none."""
    from mcred.cli.tsa_cmds import stamper_for

    if timestamp and tsa:
        raise typer.BadParameter("--timestamp takes this installation's TSA; --tsa another: one of them")
    if not (timestamp or tsa) and tsa_root is None:
        return None
    return stamper_for(tsa, tsa_root, url_option="--tsa")


pin_app = typer.Typer(help="The holder's PIN and password on the phone: tries left, change, unblock "
                       "with the PUK (specs/jpki-applet.md section 3).", no_args_is_help=True)
jpki_app.add_typer(pin_app, name="pin")
jpki_app.add_typer(watch_app, name="watch")
jpki_app.add_typer(consent_app, name="consent")
jpki_app.command("linkage")(linkage)


def _secret(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes().strip()
    except OSError as exc:
        raise typer.BadParameter(f"{path}: {exc.strerror or exc}", param_hint=what) from None


def _pin_transmit(phone: str, as_json: bool = False, *, verdict: bool = False):  # noqa: ANN202
    """The phone's SE for the JPKI host; no such phone (or an unreadable SE) is exit 2, said
    as JSON with ``--json`` (a verdict command's, ``verdict``, in the verdict's shape)."""
    import wallet_sim
    from mcred.cli.phone_cmds import host_tracing

    try:  # under --trace, each APDU pair the JPKI host sends (secrets as a length only)
        return host_tracing(wallet_sim.open_secure_element(phone, open_context().home).transmit, "jpki")
    except wallet_sim.SeError as exc:
        raise (_unusable(str(exc), as_json) if verdict else fail(str(exc), as_json)) from None


def _pin_fail(exc: Exception, puk: bool = False, as_json: bool = False) -> typer.Exit:
    """The SE's refusal in the holder's words (a wrong PUK is not a wrong PIN)."""
    from mcred.jpki_flow import SeError

    text = str(exc)
    if isinstance(exc, SeError) and puk and exc.step == "RESET RETRY COUNTER":
        if exc.sw & 0xFFF0 == 0x63C0:
            left = exc.sw & 0x0F
            text = (f"wrong PUK, {left} {'try' if left == 1 else 'tries'} left" if left else
                    "wrong PUK, and that was its last try: the PUK is locked for good; only the "
                    "issuer can set the secrets again (a new provisioning)")
        elif exc.sw == 0x6984:
            text = "the PUK is locked: only the issuer can set the secrets again (`mcred jpki pin reset --puk`)"
        elif exc.sw == 0x6A88:
            text = ("this secret or the PUK was never set: the phone's JPKI applet is not personalised "
                    "(is the phone provisioned?)")
    return fail(text, as_json, 1 if isinstance(exc, SeError) else 2)


@pin_app.command("status")
def pin_status(phone: str = typer.Option(..., "--phone"),
               as_json: bool = typer.Option(False, "--json")) -> None:
    """Tries left of the user-authentication PIN (of 3) and the signing password (of 5);
    no try is spent. 0: locked, `mcred jpki pin unblock` with the PUK."""
    from mcred.jpki_flow import SeError
    from mcred.jpki_flow import pin_status as status

    try:
        left = status(_pin_transmit(phone, as_json))
    except SeError as exc:
        raise _pin_fail(exc, as_json=as_json) from None
    if as_json:
        typer.echo(json.dumps(left))
        return
    names = {"auth": "user-auth PIN   ", "sign": "signing password"}
    for slot, n in left.items():
        # the PIN set and no password: a phone with no signing certificate (a holder under 15)
        unset = "not set (no signing certificate)" if slot == "sign" and left.get("auth") is not None \
            else "not set (not provisioned)"
        state = unset if n is None else "LOCKED (unblock with the PUK)" if n == 0 else f"{n} tries left"
        typer.echo(f"{names[slot]} {state}")


@pin_app.command("change")
def pin_change(phone: str = typer.Option(..., "--phone"), slot: str = SLOT,
               pin_file: Path = typer.Option(..., "--pin-file", dir_okay=False, help="The secret now."),
               new_pin_file: Path = typer.Option(..., "--new-pin-file", dir_okay=False,
                                                 help="The new secret (same format)."),
               as_json: bool = typer.Option(False, "--json", help="Print {\"phone\", \"slot\", \"changed\": "
                                            "true}.")) -> None:
    """Change the PIN (--slot auth, 4 digits) or the signing password (--slot sign, 6-16 of
    A-Z 0-9): the old one is verified first (a wrong one spends a try)."""
    from mcred.jpki_flow import SecretFormatError, SeError, change_pin

    old, new = _secret(pin_file, "--pin-file"), _secret(new_pin_file, "--new-pin-file")
    try:
        change_pin(_pin_transmit(phone, as_json), _check_slot(slot), old, new)
    except (SecretFormatError, SeError) as exc:
        raise _pin_fail(exc, as_json=as_json) from None
    typer.echo(json.dumps({"phone": phone, "slot": slot, "changed": True}) if as_json
               else f"{phone}: {slot} secret changed")


@pin_app.command("unblock")
def pin_unblock(phone: str = typer.Option(..., "--phone"), slot: str = SLOT,
                puk_file: Path = typer.Option(..., "--puk-file", dir_okay=False, help="The PUK (8 digits)."),
                new_pin_file: Path | None = typer.Option(None, "--new-pin-file", dir_okay=False,
                                                         help="Also set a new secret."),
                as_json: bool = typer.Option(False, "--json", help="Print {\"phone\", \"slot\", \"unblocked\": "
                                             "true, \"new_secret\"}.")) -> None:
    """Give a locked (or any) PIN or signing password its tries back with the PUK (RESET
    RETRY COUNTER), optionally setting a new value. A wrong PUK spends one of its 10 tries."""
    from mcred.jpki_flow import SecretFormatError, SeError, unblock_pin

    puk = _secret(puk_file, "--puk-file")
    new = _secret(new_pin_file, "--new-pin-file") if new_pin_file is not None else None
    try:
        unblock_pin(_pin_transmit(phone, as_json), _check_slot(slot), puk, new)
    except (SecretFormatError, SeError) as exc:
        raise _pin_fail(exc, puk=True, as_json=as_json) from None
    if as_json:
        typer.echo(json.dumps({"phone": phone, "slot": slot, "unblocked": True, "new_secret": new is not None}))
        return
    typer.echo(f"{phone}: {slot} secret unblocked" + (" and set anew" if new is not None else ""))


@pin_app.command("reset")
def pin_reset(phone: str = typer.Option(None, "--phone"),
              slot: str = typer.Option("both", "--slot", help="auth (the user-authentication PIN), sign "
                                       "(the signing password) or both."),
              puk: bool = typer.Option(False, "--puk", help="Also set a new PUK (when it is locked too)."),
              resume_id: str = typer.Option(None, "--resume", help="Finish a reset that stopped (its id is "
                                            "in the error); its values are shown then."),
              as_json: bool = typer.Option(False, "--json"),
              over_the_air: bool = OVER_THE_AIR, listen: str = LISTEN, public_url: str = PUBLIC_URL,
              session_id: str = SESSION_ID, ssl_certfile: Path = SSL_CERTFILE,
              ssl_keyfile: Path = SSL_KEYFILE, connect_timeout: float = CONNECT_TIMEOUT) -> None:
    """The issuer's side, once the holder has proved who they are (at the counter, or with
    the card): new secrets set through the TSM, with fresh retry counters; the keys and
    certificates stay, nothing is revoked. The new values are generated and shown once."""
    from mcred.provision import ProvisionError, reset_secrets, resume_reset, secret_slots
    from tsm.errors import JobError, TsmError
    from tsm.jobs import list_jobs, read_job
    from wallet_sim.se.errors import SeError as PhoneError

    if (phone is None) == (resume_id is None):
        raise typer.BadParameter("give --phone, or --resume JOB to finish a reset that stopped")
    if slot not in ("auth", "sign", "both"):
        raise typer.BadParameter(f"slot {slot!r}: use auth, sign or both", param_hint="--slot")
    ota = over_the_air_options(over_the_air, listen, public_url, session_id, ssl_certfile, ssl_keyfile, as_json,
                               connect_timeout=connect_timeout)
    ctx = open_context()

    def run(job):  # noqa: ANN001, ANN202 - job(transmit), here or over the air
        return job(None) if ota is None else ota.run(phone, job, what="reset")

    try:
        if resume_id is not None:
            if ota is not None:
                phone = read_job(ctx.engine, resume_id).se_id
            se_id = phone or read_job(ctx.engine, resume_id).se_id
            result = run(lambda transmit: resume_reset(ctx, resume_id, actor=cli_actor(),
                                                       **tsm_tracing(ctx.home, se_id, transmit)))
            phone = result.phone_id
        else:
            # both: what the phone has (a holder under 15's phone has no signing password)
            slots = secret_slots(ctx, phone) if slot == "both" else (slot,)
            result = run(lambda transmit: reset_secrets(
                ctx, phone, slots=slots, puk=puk, actor=cli_actor(), **tsm_tracing(ctx.home, phone, transmit)))
    except (ProvisionError, PhoneError, JobError) as exc:  # PhoneError: no such phone, its SE image unreadable
        raise fail(str(exc), as_json) from None
    except TsmError as exc:
        stopped = [j for j in list_jobs(ctx.engine, phone, kind="reset-secrets", unfinished=True)]
        hint = (f"job {stopped[-1].id} stopped: `mcred jpki pin reset --resume {stopped[-1].id}` finishes it "
                "and shows the new values (the SE may hold them already)" if stopped else "run it again")
        raise fail(f"resetting the secrets of {phone}: {exc} ({hint})", as_json, 1) from None
    shown = {k: result.values[k] for k in result.generated}
    if as_json:
        typer.echo(json.dumps({**result.summary(), "secrets_shown_once": shown}))
        return
    typer.echo(f"{phone}: reset {', '.join(result.reset)} (job {result.job_id}); shown once:")
    for line in secret_lines(shown):
        typer.echo(f"  {line}")
    if slot == "both" and "sign" not in result.reset:
        typer.echo(f"no signing password: {phone} holds no signing certificate")


@jpki_app.command("issue-sign")
def issue_sign_cmd(phone: str = typer.Option(..., "--phone"),
                   password_file: Path = typer.Option(None, "--password-file", dir_okay=False, exists=True,
                                                      help="The holder's signing password (6-16 of A-Z and "
                                                      "0-9); default: generated and shown once."),
                   as_json: bool = typer.Option(False, "--json"),
                   over_the_air: bool = OVER_THE_AIR, listen: str = LISTEN, public_url: str = PUBLIC_URL,
                   session_id: str = SESSION_ID, ssl_certfile: Path = SSL_CERTFILE,
                   ssl_keyfile: Path = SSL_KEYFILE, connect_timeout: float = CONNECT_TIMEOUT) -> None:
    """A signing certificate (署名用電子証明書) onto the phone of a holder who has turned 15
    since it was provisioned (none is issued under 15): the key generated in the SE, the
    certificate issued and written, the password set, through the TSM. Refused (exit 2) while
    the holder is under 15 or when the phone holds a live signing certificate; a run that
    stopped is finished by running the command again (exit 1 names the job)."""
    from mcred.provision import ProvisionError, issue_sign
    from tsm.errors import JobError, TsmError
    from wallet_sim.se.errors import SeError as PhoneError

    ota = over_the_air_options(over_the_air, listen, public_url, session_id, ssl_certfile, ssl_keyfile, as_json,
                               connect_timeout=connect_timeout)
    password = None
    if password_file is not None:
        try:
            password = password_file.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise fail(f"--password-file {password_file}: {exc}", as_json) from None
    ctx = open_context()

    def run(job):  # noqa: ANN001, ANN202 - job(transmit), here or over the air
        return job(None) if ota is None else ota.run(phone, job, what="issue-sign")

    try:
        result = run(lambda transmit: issue_sign(ctx, phone, password=password, actor=cli_actor(),
                                                 **tsm_tracing(ctx.home, phone, transmit)))
    except (ProvisionError, PhoneError, JobError) as exc:
        raise fail(str(exc), as_json) from None
    except TsmError as exc:
        hint = _rerun_hint(ctx, phone, "issue-sign")
        raise fail(f"issuing the signing certificate of {phone}: {exc} ({hint})", as_json, 1) from None
    shown = {"password": result.password} if result.generated and result.password else {}
    if as_json:
        typer.echo(json.dumps({**result.summary(), **({"secrets_shown_once": shown} if shown else {})},
                              ensure_ascii=False))
        return
    c = result.summary()["sign_certificate"]
    typer.echo(f"{phone}: signing certificate serial {c['serial']} until {c['not_after']} (job {result.job_id}"
               + (", resumed" if result.resumed else "") + ")")
    if shown:
        typer.echo("shown once:")
        for line in secret_lines(shown):
            typer.echo(f"  {line}")


@jpki_app.command("renew")
def renew_cmd(phone: str = typer.Option(..., "--phone"),
              slot: str = typer.Option("both", "--slot", help="auth (the user-authentication certificate), sign "
                                       "(the signing certificate) or both (what the phone holds: a holder under 15's "
                                       "phone, the user-authentication certificate)."),
              early: bool = typer.Option(False, "--early", help="Renew before the window (3 months before the "
                                         "expiry): an operator's drill, audited with --reason."),
              reason: str = typer.Option(None, "--reason", help="Why an --early renewal (audited)."),
              as_json: bool = typer.Option(False, "--json"),
              over_the_air: bool = OVER_THE_AIR, listen: str = LISTEN, public_url: str = PUBLIC_URL,
              session_id: str = SESSION_ID, ssl_certfile: Path = SSL_CERTFILE,
              ssl_keyfile: Path = SSL_KEYFILE, connect_timeout: float = CONNECT_TIMEOUT) -> None:
    """Renew the phone's JPKI certificates (電子証明書の更新), the card staying: new keys born in
    the SE, new certificates to the 5th birthday after today (capped by the card's expiry)
    written through the TSM, the old ones revoked as superseded. The PIN and the signing
    password stay as the holder set them; the mdocs are untouched. Taken from 3 months before
    the expiry (exit 2 before, naming the dates; --early --reason drills it) and after it;
    a run that stopped is finished by running the command again (exit 1 names the job). A
    slot a renewal given up left without a usable certificate (`mcred tsm abandon`) is
    renewed whatever the old expiry."""
    from mcred.provision import ProvisionError, RenewalTooEarlyError, renew_jpki
    from tsm.errors import JobError, TsmError
    from wallet_sim.se.errors import SeError as PhoneError

    if slot not in ("auth", "sign", "both"):
        raise typer.BadParameter(f"slot {slot!r}: use auth, sign or both", param_hint="--slot")
    if early != (reason is not None):
        raise fail("--early and --reason go together: an early renewal is audited with its reason", as_json)
    ota = over_the_air_options(over_the_air, listen, public_url, session_id, ssl_certfile, ssl_keyfile, as_json,
                               connect_timeout=connect_timeout)
    ctx = open_context()

    def run(job):  # noqa: ANN001, ANN202 - job(transmit), here or over the air
        return job(None) if ota is None else ota.run(phone, job, what="renew")

    try:
        result = run(lambda transmit: renew_jpki(ctx, phone, slot=slot, early=early, reason=reason,
                                                 actor=cli_actor(), **tsm_tracing(ctx.home, phone, transmit)))
    except RenewalTooEarlyError as exc:
        if as_json:
            typer.echo(json.dumps({"error": str(exc), "slot": exc.slot, "not_after": exc.not_after.isoformat(),
                                   "renewable_from": exc.renewable_from.isoformat()}, ensure_ascii=False))
            raise typer.Exit(2) from None
        raise fail(str(exc), as_json) from None
    except (ProvisionError, PhoneError, JobError) as exc:
        raise fail(str(exc), as_json) from None
    except TsmError as exc:
        hint = _rerun_hint(ctx, phone, "renew-jpki")
        raise fail(f"renewing the certificates of {phone}: {exc} ({hint})", as_json, 1) from None
    summary = result.summary()
    if as_json:
        typer.echo(json.dumps(summary, ensure_ascii=False))
        return
    for c in summary["renewed"]:
        typer.echo(f"{phone}: {c['slot']} certificate renewed, serial {c['old_serial'] or '(none)'} -> {c['serial']}, "
                   f"until {c['not_after']}")
    typer.echo(f"job {result.job_id}" + (", resumed" if result.resumed else "")
               + "; PIN and signing password unchanged")
    if result.sign_withheld and "sign" not in {c["slot"] for c in summary["renewed"]}:
        typer.echo(f"no signing certificate renewed: {result.sign_withheld}")


#: ``--exit-unavailable N``: opt in to an exit status of its own for "ask again later"
EXIT_UNAVAILABLE = typer.Option(
    None, "--exit-unavailable", min=3, max=125, metavar="N",
    help="exit N instead of 1 when the verdict is invalid only for want of a trustworthy "
    "answer (every failed check has code unavailable: responder or CRL unreachable, stale, "
    "...): asking again later may make it valid; e.g. 75 (EX_TEMPFAIL)")


@jpki_app.command("verify")
def verify(file: Path = typer.Argument(..., exists=True, dir_okay=False),
           signature: Path | None = typer.Option(None, "--signature", exists=True, dir_okay=False,
                                                 help="the detached signature (.p7s) of FILE; without "
                                                 "it, FILE is a PDF or an XML document and the "
                                                 "signatures inside it are verified"),
           slot: str = SLOT,
           certificate: Path | None = typer.Option(
               None, "--certificate", help="signer certificate: SIG is then a raw signature"),
           roots: Path | None = typer.Option(None, "--roots", help="PEM bundle of trusted roots "
                                             "(default: this installation's)"),
           revocation: str = typer.Option("ocsp", help="ocsp, crl, auto (OCSP, then the "
                                          "CRL when the responder gives no verified answer), "
                                          "embedded (the validation data the PDF or the "
                                          "signature carries, at its time-stamp: no network) "
                                          "or none"),
           ocsp_url: str | None = typer.Option(None, "--ocsp-url"),
           crl: Path | None = typer.Option(None, "--crl", help="CRL file instead of fetching"),
           tsa_roots: Path | None = typer.Option(None, "--tsa-roots", help="PEM bundle of trusted "
                                                 "time-stamping roots (default: this installation's "
                                                 "TSA's; none with --roots)"),
           rp: str | None = typer.Option(None, "--rp", help="ask a relying-party service "
                                         "instead of verifying here: the reader's URL, e.g. "
                                         "http://127.0.0.1:8471 (or <issuer>/reader)"),
           token: str | None = typer.Option(None, "--token", envvar="MCRED_API_TOKEN",
                                            help="bearer token (scope reader) for --rp on "
                                            "the issuer service"),
           exit_unavailable: int | None = EXIT_UNAVAILABLE,
           as_json: bool = typer.Option(False, "--json")) -> None:
    """Relying party: signature, chain to the root, policy, validity, revocation; of a
    detached signature (--signature), of every signature inside a PDF (PAdES), or of the
    enveloped signature of an XML document (XML signature, XAdES)."""
    from reader.relying_party import load_roots
    from reader.relying_party import verify as rp_verify

    _check_slot(slot)
    if revocation not in ("ocsp", "crl", "auto", "embedded", "none"):
        raise typer.BadParameter(f"{revocation!r}: one of ocsp, crl, auto, embedded, none",
                                 param_hint="--revocation")
    content = file.read_bytes()
    inside = signature is None  # the signature is inside FILE: a PDF, or an XML document
    in_xml = False

    if inside:
        if certificate is not None:
            raise typer.BadParameter("a raw signature needs --signature", param_hint="--certificate")
        if slot != "sign":
            raise typer.BadParameter("documents are signed with the signing certificate", param_hint="--slot")
        in_xml = _looks_like_xml(content)
        if not in_xml and b"%PDF-" not in content[:1024]:
            raise typer.BadParameter(f"{file} is neither a PDF nor an XML document: give its detached signature "
                                     "with --signature FILE.p7s", param_hint="--signature")
    if rp is not None:
        if roots or ocsp_url or crl or tsa_roots:
            raise typer.BadParameter("--roots, --tsa-roots, --ocsp-url and --crl are the local relying "
                                     "party's: the service at --rp has its own", param_hint="--rp")
        if inside:
            result = _ask_rp_inside(rp, token, content, in_xml, revocation, as_json)
        else:
            result = _ask_rp(rp, token, content, signature.read_bytes(), slot,
                             certificate.read_bytes() if certificate else None, revocation, as_json)
    else:
        from protocols.certs import CertificateParseError

        try:
            trust = load_roots(roots.read_bytes()) if roots else _issuer().roots(slot)
        except (CertificateParseError, OSError) as exc:
            raise typer.BadParameter(f"{roots}: {exc}", param_hint="--roots") from None
        try:
            # with roots of its own (--roots), a relying party's TSA roots are its own too:
            # this installation is not opened (nor its TSA made) for them
            tsa_trust = (load_roots(tsa_roots.read_bytes()) if tsa_roots
                         else _tsa().roots() if roots is None else [])
        except (CertificateParseError, OSError) as exc:
            raise typer.BadParameter(f"{tsa_roots}: {exc}", param_hint="--tsa-roots") from None
        if in_xml:
            from reader.jpki_xml import verify_xml

            try:
                result = verify_xml(content, roots=trust, revocation=revocation, ocsp_url=ocsp_url,
                                    crl=crl.read_bytes() if crl else None, tsa_roots=tsa_trust)
            except ImportError:
                raise _unusable("verifying a signed XML document needs signxml: pip install 'mcred[xml]'",
                                as_json) from None
        elif inside:
            try:
                from reader.jpki_pdf import verify_pdf
            except ImportError:
                raise _unusable("verifying a signed PDF needs pyHanko: pip install 'mcred[pdf]'", as_json) from None
            result = verify_pdf(content, roots=trust, revocation=revocation, ocsp_url=ocsp_url,
                                crl=crl.read_bytes() if crl else None, tsa_roots=tsa_trust)
        else:
            result = rp_verify(content, signature.read_bytes(), roots=trust, slot=slot,
                               certificate=certificate.read_bytes() if certificate else None,
                               revocation=revocation, ocsp_url=ocsp_url,
                               crl=crl.read_bytes() if crl else None, tsa_roots=tsa_trust)
    _print_verdict(result, as_json, revocation, exit_unavailable)


def _unusable(message: str, as_json: bool, code: int = 2) -> typer.Exit:
    """No verdict: said (as JSON with ``--json``), exit ``code``."""
    if as_json:
        typer.echo(json.dumps({"valid": False, "error": message, "checks": [], "documents": []},
                              ensure_ascii=False))
    else:
        typer.echo(f"error: {printable(message)}", err=True)
    return typer.Exit(code)


def _rp_post(url: str, path: str, body: dict | None, token: str | None, as_json: bool,
             status: int = 200, *, document: tuple[bytes, str] | None = None) -> dict:
    """POST ``body`` as JSON (or ``document``: bytes and their content type) to a
    relying-party service's ``path`` and return the JSON object it answers with ``status``;
    exit 2 (:func:`_unusable`) for anything else."""
    from reader.fetch import SESSION_MAX_BYTES, FetchError, fetch

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    target = url.rstrip("/") + path
    content, kind = document if document is not None else (json.dumps(body or {}).encode(), "application/json")
    try:
        answer = fetch(None, "POST", target, max_bytes=SESSION_MAX_BYTES, timeout=60,
                       content=content, headers={"Content-Type": kind, **headers})
    except FetchError as exc:
        raise _unusable(f"relying party at {target}: {exc}", as_json) from None
    if answer.status == 404:
        raise _unusable(f"no relying party at {target} (HTTP 404): a reader serves one only when "
                        "started with `mcred reader serve --jpki-roots FILE`; the issuer service's "
                        "is at <issuer>/reader", as_json)
    if answer.status != status:
        try:
            detail = printable(str(json.loads(answer.body).get("detail", answer.preview(300))))[:300]
        except (ValueError, AttributeError):
            detail = answer.preview(300)
        raise _unusable(f"relying party at {target}: HTTP {answer.status}: {detail}", as_json)
    try:
        result = json.loads(answer.body)
        if not isinstance(result, dict):
            raise ValueError("not an object")
    except ValueError:
        raise _unusable(f"relying party at {target}: not JSON", as_json) from None
    return result


def _ask_rp(url: str, token: str | None, content: bytes, signature: bytes, slot: str,
            certificate: bytes | None, revocation: str, as_json: bool) -> dict:
    """POST the signature to ``<url>/rp/jpki/verify``; exit 2 when there is no verdict."""
    import base64

    if revocation not in ("ocsp", "crl", "auto"):
        raise _unusable(f"--revocation {revocation}: a relying-party service checks ocsp, crl "
                        "or auto", as_json)
    body = {"content": base64.b64encode(content).decode(),
            "signature": base64.b64encode(signature).decode(), "slot": slot,
            "revocation": revocation}
    if certificate is not None:
        body["certificate"] = base64.b64encode(certificate).decode()
    return _verdict(_rp_post(url, "/rp/jpki/verify", body, token, as_json), url, as_json)


def _ask_rp_inside(url: str, token: str | None, content: bytes, in_xml: bool, revocation: str,
                   as_json: bool) -> dict:
    """POST a document signed inside, the PDF or the XML document itself, to
    ``<url>/rp/jpki/verify-pdf`` or ``verify-xml``; exit 2 when there is no verdict."""
    what, route, kind = (("an XML signature", "verify-xml", "application/xml") if in_xml
                         else ("a PDF", "verify-pdf", "application/pdf"))
    if revocation not in ("ocsp", "crl", "auto", "embedded"):
        raise _unusable(f"--revocation {revocation}: a relying-party service checks {what} with ocsp, crl, "
                        "auto or embedded", as_json)
    return _verdict(_rp_post(url, f"/rp/jpki/{route}?revocation={revocation}", None, token, as_json,
                             document=(content, kind)), url, as_json)


def _looks_like_xml(content: bytes) -> bool:
    """An XML document (after a BOM and white space, a ``<``), not a PDF."""
    head = content[:1024].lstrip(b"\xef\xbb\xbf").lstrip()
    return head.startswith(b"<") and b"%PDF-" not in content[:1024]


def _verdict(result: dict, url: str, as_json: bool) -> dict:
    if not isinstance(result.get("checks"), list):
        raise _unusable(f"relying party at {url}: not a verdict", as_json)
    return result


def _only_unavailable(result: dict) -> bool:
    """Whether every failed check of an invalid verdict has code ``unavailable`` (and one
    failed): no answer was refused, one was missing."""
    failed = [c for c in result.get("checks", []) if isinstance(c, dict) and not c.get("passed")]
    return bool(failed) and all(c.get("code") == "unavailable" for c in failed)


def _print_verdict(result: dict, as_json: bool, revocation: str = "", exit_unavailable: int | None = None) -> None:
    """The verdict, check by check with its code (:func:`mcred.cli.text.check_line`; a
    revoked certificate's ``revoked_at`` and ``revocation_reason`` on the line under its
    check), or as JSON; exit 0 only when valid, else 1 (or
    ``exit_unavailable`` when :func:`_only_unavailable`). With ``revocation`` none, a line
    says so: the verdict has no revocation check, and a revoked certificate passes."""
    if as_json:
        typer.echo(json.dumps(result, ensure_ascii=False, indent=2))
    else:
        for c in result["checks"]:
            typer.echo(check_line(c))
            if (revoked := revocation_line(c)) is not None:
                typer.echo(revoked)
        if revocation == "none":
            typer.echo("not checked: revocation (--revocation none: a revoked or held certificate passes)")
        typer.echo("VALID" if result["valid"] else "INVALID")
    if result["valid"]:
        raise typer.Exit(0)
    raise typer.Exit(exit_unavailable if exit_unavailable is not None and _only_unavailable(result) else 1)


@jpki_app.command("auth")
def auth(phone: str = typer.Option(..., "--phone"),
         pin_file: Path = typer.Option(..., "--pin-file", dir_okay=False,
                                       help="The user-authentication PIN (4 digits)."),
         rp: str | None = typer.Option(None, "--rp", help="The relying-party service: the reader's URL "
                                       "(`mcred reader serve --jpki-roots`) or <issuer>/reader; "
                                       "default: a relying party in this process over this "
                                       "installation's roots"),
         token: str | None = typer.Option(None, "--token", envvar="MCRED_API_TOKEN",
                                          help="bearer token (scope reader) for --rp on the issuer service"),
         revocation: str = typer.Option("ocsp", help="ocsp, crl or auto (and none for the local "
                                        "relying party)"),
         exit_unavailable: int | None = EXIT_UNAVAILABLE,
         as_json: bool = typer.Option(False, "--json")) -> None:
    """利用者証明: authenticate the phone's holder to a relying party. The relying party hands
    out a challenge; the phone signs it with its user-authentication key (the PIN verified in
    the SE); the relying party takes the challenge back once and checks the signature, the
    certificate's chain, policy, validity and revocation. Exit 0 only when valid."""
    import base64

    from mcred.jpki_flow import SecretFormatError, SeError, sign_challenge
    from reader.relying_party import RelyingPartyService

    if revocation not in ("ocsp", "crl", "auto", "none") or (rp and revocation == "none"):
        raise _unusable(f"--revocation {revocation}: ocsp, crl or auto" + ("" if rp else " (or none)"), as_json)
    pin = _secret(pin_file, "--pin-file")
    transmit = _pin_transmit(phone, as_json, verdict=True)  # the phone exists, before a relying party is asked
    local = None
    if rp is None:
        local = RelyingPartyService(lambda: _issuer().roots("auth"))
        challenge = local.challenge()
        cid, nonce = challenge.id, challenge.nonce
    else:
        got = _rp_post(rp, "/rp/jpki/challenges", None, token, as_json, status=201)
        try:
            cid, nonce = str(got["challenge_id"]), base64.b64decode(str(got["nonce"]), validate=True)
        except (KeyError, ValueError):  # binascii.Error is a ValueError
            raise _unusable(f"relying party at {rp}: not a challenge", as_json) from None
    try:
        signature, cert = sign_challenge(transmit, pin, nonce)
    except (SecretFormatError, SeError) as exc:
        if as_json:  # no verdict: said as JSON too, with the same exit status
            raise _unusable(str(exc), True, 1 if isinstance(exc, SeError) else 2) from None
        raise _pin_fail(exc) from None
    if local is not None:
        result = local.authenticate(cid, signature, cert, revocation=revocation)
    else:
        body = {"challenge_id": cid, "signature": base64.b64encode(signature).decode(),
                "certificate": base64.b64encode(cert).decode(), "revocation": revocation}
        result = _verdict(_rp_post(rp, "/rp/jpki/authentications", body, token, as_json), rp, as_json)
    _print_verdict(result, as_json, revocation, exit_unavailable)


def _changes(phone: str, changes: list) -> str:
    """What ``revoke`` or ``release`` did, as one JSON object: a change a credential."""
    return json.dumps({"phone": phone, "changes": [
        {"credential": c.credential_id, "kind": c.kind, "serial": c.serial, "partition": c.partition,
         "before": c.before, "after": c.after, "reason": c.reason,
         **({"amended_from": c.amended_from} if c.amended_from else {})} for c in changes]},
        ensure_ascii=False)


CHANGES_JSON = typer.Option(False, "--json", help="Print {\"phone\", \"changes\": [{\"credential\", \"kind\", "
                            "\"serial\", \"partition\", \"before\", \"after\", \"reason\"[, \"amended_from\": the reason a "
                            "revocation amended had]}]} (none: nothing to change).")


def revoke(phone: str = typer.Option(..., "--phone"),
           reason: str = typer.Option(..., "--reason", help="affiliationChanged, superseded, "
                                      "cessationOfOperation, certificateHold, keyCompromise"),
           credential: str = typer.Option("all", "--credential", help="sign, auth, jpki (both certificates), "
                                          "mdoc or all"),
           invalid_since: str | None = typer.Option(
               None, "--invalid-since", help="since when the key is known or suspected to have been compromised "
               "(RFC 5280 invalidityDate), an instant with its offset (2026-12-01T09:00:00+09:00), not after now; "
               "any reason but certificateHold. A credential on hold keeps the earlier of it and the hold's time."),
           as_json: bool = CHANGES_JSON,
           ) -> None:
    """Revoke (or hold, with certificateHold) a phone's credentials. A credential revoked
    already is amended, not revoked again: keyCompromise replaces its reason, and an
    --invalid-since earlier than its recorded one replaces that (its revocation time stays)."""
    from issuer.revocation import InvalidSinceRefused, RevocationError
    from issuer.revocation import revoke as do_revoke

    since = parse_invalid_since(invalid_since)
    try:
        changes = do_revoke(open_context().sessions, phone, reason, credential, actor=cli_actor(),
                            invalid_since=since)
    except InvalidSinceRefused as exc:
        raise typer.BadParameter(exc.why, param_hint="--invalid-since") from None
    except RevocationError as exc:
        raise typer.BadParameter(str(exc)) from None
    if as_json:
        typer.echo(_changes(phone, changes))
        return
    for c in changes:
        if c.amended_from is not None:  # a revocation made already, amended (issuer.revocation._amend)
            typer.echo(f"{c.kind} {c.serial or c.credential_id}: revoked ({c.amended_from}) -> revoked "
                       f"({c.reason}), amended")
        else:
            typer.echo(f"{c.kind} {c.serial or c.credential_id}: {c.before} -> {c.after} ({c.reason})")
    if not changes:
        typer.echo("nothing to change")


def release(phone: str = typer.Option(..., "--phone"),
            credential: str = typer.Option("all", "--credential", help="sign, auth, jpki (both certificates), "
                                           "mdoc or all: what to release of what is on hold"),
            as_json: bool = CHANGES_JSON) -> None:
    """Lift a hold (removeFromCRL): the credential is valid again."""
    from issuer.revocation import RevocationError
    from issuer.revocation import release as do_release

    try:
        changes = do_release(open_context().sessions, phone, credential, actor=cli_actor())
    except RevocationError as exc:
        raise typer.BadParameter(str(exc)) from None
    if as_json:
        typer.echo(_changes(phone, changes))
        return
    for c in changes:
        typer.echo(f"{c.kind} {c.serial or c.credential_id}: hold -> valid")
    if not changes:
        typer.echo("nothing on hold")


def serve(port: int = typer.Option(8470, "--port"),
          host: str = typer.Option("127.0.0.1", "--host"),
          workers: int = typer.Option(1, "--workers", min=1, help="uvicorn worker processes, each with "
                                      "its own job threads ($MCRED_JOB_WORKERS, default 8); the same as "
                                      "`uvicorn --factory mcred.service:app_from_env --workers N`."),
          ssl_certfile: Path | None = typer.Option(None, "--ssl-certfile", help="Serve HTTPS with this "
                                                   "certificate chain (PEM, leaf first); needs --ssl-keyfile. "
                                                   "MCRED_PUBLIC_URL should then say https."),
          ssl_keyfile: Path | None = typer.Option(None, "--ssl-keyfile", help="The private key of "
                                                  "--ssl-certfile (PEM)."),
          housekeeping_interval: float = typer.Option(300.0, "--housekeeping-interval", min=0, help="Seconds "
                                                      "between the issuer's housekeeping runs (CRLs, status lists, "
                                                      "the VICAL CA's staging, signer rollovers, stale jobs: mcred "
                                                      "housekeeping tasks), made by one worker at a time; 0: none "
                                                      "(run mcred housekeeping run from cron instead).")) -> None:
    """Run the HTTP service (OCSP, CRLs, trust material, ...) with uvicorn, and its scheduled
    housekeeping."""
    import uvicorn

    from mcred.context import Context
    from mcred.service import create_app, tls_options

    try:
        tls = tls_options(ssl_certfile, ssl_keyfile)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    check_can_listen(host, port)
    ctx = Context.open()
    # where it listens, as `mcred reader serve` says (uvicorn's own lines are below its warnings)
    said = (f"issuer service on {'https' if tls else 'http'}://{host}:{port}"
            + (f", {workers} workers" if workers > 1 else "")
            + f", database {ctx.engine.url.render_as_string(hide_password=True)}")
    mismatch = public_url_mismatch(ctx.public_url, host, port, bool(tls))
    if mismatch:
        typer.echo(mismatch, err=True)
    if housekeeping_interval:
        said += f", housekeeping every {housekeeping_interval:g} s"
    if workers == 1:
        service = create_app(ctx, housekeeping_interval=housekeeping_interval or None)
        typer.echo(said)
        uvicorn.run(service, host=host, port=port, log_level="warning", **tls)
        return
    ctx.engine.dispose()  # migrated once here, before the workers start (each opens its own)
    typer.echo(said)
    from mcred.metrics import shared_across_workers

    os.environ["MCRED_SERVE_WORKERS"] = str(workers)  # each worker's app knows it is not alone
    from mcred.housekeeping import INTERVAL_ENV

    os.environ[INTERVAL_ENV] = str(housekeeping_interval)  # each worker's schedule (one runs it at a time)
    with shared_across_workers():  # /metrics sums every worker's counts
        uvicorn.run("mcred.service:app_from_env", factory=True, workers=workers, host=host, port=port,
                    log_level="warning", **tls)


@export_app.command("jpki-root")
def export_root(slot: str = typer.Option("sign", "--slot", help="sign (signing certificates), auth (user "
                                         "authentication) or all (both, one PEM bundle: what a relying party "
                                         "that verifies signatures and logins trusts)"),
                out: Path = typer.Option(..., "--out", callback=out_path)) -> None:
    """The active root of a slot (PEM or DER by extension; .pem holds every generation: the
    older ones, the active one and the staged next one, mcred jpki stage)."""
    if slot == "all":
        if out.suffix.lower() != ".pem":
            raise typer.BadParameter("--slot all writes a PEM bundle: name it .pem", param_hint="--out")
        roots = [r for each in ("sign", "auth") for r in _issuer().roots(each)]
        what = f"{len(roots)} root(s): every generation of the sign and the auth slot"
    else:
        roots = _issuer().roots(_check_slot(slot))
        what = f"{len(roots)} root generation(s)"
    if out.suffix.lower() == ".pem":
        out.write_bytes(b"".join(r.public_bytes(Encoding.PEM) for r in roots))
        typer.echo(f"wrote {out} ({what})")
    else:
        _write(out, _issuer().root(slot).public_bytes(Encoding.DER), "cert")


@export_app.command("tsa-root")
def export_tsa_root(out: Path = typer.Option(..., "--out", callback=out_path)) -> None:
    """The time-stamping roots of this installation's TSA (PEM or DER by extension; .pem holds
    every generation, the current first, then the staged next one (mcred tsa stage), then the
    older ones, so that tokens made under an older root before a rollover (mcred tsa rollover)
    verify as well as new ones; .der the current one): what a relying party trusts for
    signature time-stamps."""
    roots = _tsa().roots()
    if out.suffix.lower() == ".pem":
        out.write_bytes(b"".join(r.public_bytes(Encoding.PEM) for r in roots))
        typer.echo(f"wrote {out} ({len(roots)} root generation(s))")
    else:
        _write(out, roots[0].public_bytes(Encoding.DER), "cert")


@export_app.command("jpki-cert")
def export_cert(phone: str = typer.Option(..., "--phone"), slot: str = SLOT,
                out: Path = typer.Option(..., "--out", callback=out_path)) -> None:
    """The phone's newest certificate of a slot."""
    from issuer.jpki.errors import UnknownCredential

    try:
        der = _issuer().certificate(phone, _check_slot(slot))
    except UnknownCredential as exc:  # no such phone, or none of its certificates: the input, exit 2
        raise fail(str(exc), False) from None
    _write(out, der, "cert")


@export_app.command("crl")
def export_crl(slot: str = SLOT, partition: str | None = typer.Option(
                   None, "--partition", help="partition code (default: the only one; with "
                   "several, name one or give --phone)"),
               phone: str | None = typer.Option(None, "--phone", help="the partition of this "
                                                "phone's certificate"),
               out: Path = typer.Option(..., "--out", callback=out_path)) -> None:
    """The current full CRL of a partition (PEM or DER by extension)."""
    from issuer.jpki import partitions
    from issuer.jpki.errors import UnknownCredential

    issuer = _issuer()
    slot = _check_slot(slot)
    with issuer.sessions() as s:
        codes = partitions.all_codes(s)
    try:
        if partition is None and phone is not None:
            partition = issuer.partition_of(phone, slot)
        if partition is None:
            if len(codes) != 1:
                raise typer.BadParameter(f"choose --partition among {', '.join(codes) or '(none)'}, "
                                         "or --phone ID for that phone's")
            partition = codes[0]
        der = issuer.crl(slot, partition)
    except UnknownCredential as exc:  # a phone without that certificate, a partition not there: the input, exit 2
        raise fail(f"{exc} (partitions: {', '.join(codes) or 'none yet'})"
                   if phone is None else str(exc), False) from None
    _write(out, der, "crl")


def register(app: typer.Typer) -> None:
    app.add_typer(jpki_app, name="jpki")
    app.command("revoke")(revoke)
    app.command("release")(release)
    app.command("serve")(serve)


def _rerun_hint(ctx, phone: str, kind: str) -> str:  # noqa: ANN001 - mcred.context.Context
    """What to do after a TSM error stopped ``mcred jpki issue-sign`` or ``renew`` (a job of
    ``kind``): the phone's stopped job, which the same command finishes, or run it again."""
    from tsm.jobs import list_jobs

    stopped = list_jobs(ctx.engine, phone, kind=kind, unfinished=True)
    return f"job {stopped[-1].id} stopped: the same command finishes it" if stopped else "run it again"
