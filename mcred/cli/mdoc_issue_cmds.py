"""The issuer's mdoc side on the command line, and its composition for an installation.

``mcred mdoc issue`` / ``mcred mdoc respond`` (interop with other mdoc tools),
``mcred mdoc ds list|rollover|revoke`` (document signers, the IACA CRL),
``mcred mdoc vical-signer list|revoke`` (VICAL signers, the VICAL CA's CRL),
``mcred mdoc vical-ca list|stage|rollover`` (the VICAL CA's generations, staged ahead, its withdrawal),
``mcred mdoc key destroy`` (a signer's private key destroyed once no duty needs it),
``mcred export iaca``, ``mcred status-list show``, ``mcred credential list|show``.
Exit codes: 0 done, 1 refused (a check failed), 2 unreadable input.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from rich.markup import escape

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
from mcred.cli.state import cli_actor, open_context, out_path
from mcred.cli.text import cell, echo_json_array, fail, make_console, print_tree
from protocols import cardsub, certs
from protocols.cose import key_signer
from protocols.jpki.renewal import NOTICE_MAX_DAYS
from protocols.mdoc import DeviceResponse, IssuerSigned, MdocError, build_document
from protocols.status import (
    TYP_IDENTIFIER_LIST,
    TYP_STATUS_LIST,
    Status,
    StatusListError,
    decode_identifier_list_token,
    decode_status_list_token,
    peek_typ,
    verify_identifier_list_token,
    verify_status_list_token,
)

if TYPE_CHECKING:
    from issuer.db import Credential
    from issuer.mdoc.service import MdocService
    from mcred.context import Context

console = make_console()


# The registry, the database and the issuer's keys are imported where a command uses them,
# not at start-up: `mcred --help`, `mcred inspect` or `mcred mdoc verify` load none of them.


def _mdoc_service() -> tuple[Context, MdocService]:
    from mcred.mdoc_flow import mdoc_service

    ctx = open_context()
    return ctx, mdoc_service(ctx)


def _fail(message: str, code: int = 2, as_json: bool = False) -> typer.Exit:
    """``error: message`` on stderr (it was on stdout, among the results), or with ``--json``
    ``{"error": message}`` on stdout (:func:`mcred.cli.text.fail`)."""
    return fail(message, as_json, code)


def _read(path: Path, what: str, as_json: bool = False) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise _fail(f"{what} {path}: {exc.strerror or exc}", as_json=as_json) from None


def _load_key(path: Path, as_json: bool = False) -> tuple[ec.EllipticCurvePublicKey, ec.EllipticCurvePrivateKey | None]:
    data = _read(path, "device key", as_json)
    try:
        private = serialization.load_pem_private_key(data, None)
    except (ValueError, TypeError):
        try:
            public = serialization.load_pem_public_key(data)
        except ValueError:
            raise _fail(f"device key {path}: neither a PEM private key nor a PEM public key", as_json=as_json) from None
        if not isinstance(public, ec.EllipticCurvePublicKey):
            raise _fail(f"device key {path}: not an EC key", as_json=as_json) from None
        return public, None
    if not isinstance(private, ec.EllipticCurvePrivateKey):
        raise _fail(f"device key {path}: not an EC key", as_json=as_json)
    return private.public_key(), private


def issue(
    holder: Path = typer.Option(..., "--holder", help="Holder JSON file (the fields of `mcred provision --holder`)."),
    device_key: Path = typer.Option(..., "--device-key", help="Device key PEM (private: proof of possession is made; public: attested)."),
    out: Path = typer.Option(..., "--out", callback=out_path, help="Where to write the IssuerSigned CBOR."),
    phone: str | None = typer.Option(None, "--phone", help="Phone id to record it under (default derived from the key)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Issue a stand-alone IssuerSigned (CBOR) for a device key, recorded in the registry."""
    try:
        data = json.loads(_read(holder, "holder file", as_json))
        parsed = cardsub.parse_holder(data)
    except json.JSONDecodeError as exc:
        raise _fail(f"holder file {holder}: not JSON ({exc})", as_json=as_json) from None
    except cardsub.CardSubError as exc:
        raise _fail(f"holder file {holder}: {exc}", as_json=as_json) from None
    portrait = None
    if parsed.portrait:
        portrait = _read((holder.parent / parsed.portrait), "portrait", as_json)
        try:
            cardsub.check_portrait(portrait)  # before the holder is registered
        except cardsub.CardSubError as exc:
            raise _fail(f"holder file {holder}: {exc}", as_json=as_json) from None
    public, private = _load_key(device_key, as_json)
    spki = public.public_bytes(serialization.Encoding.DER,
                               serialization.PublicFormat.SubjectPublicKeyInfo)
    from issuer.db import Holder, Phone
    from issuer.holders import HolderError, attach_phone, check_phone_id, holder_data
    from issuer.holders import register as register_holder
    from issuer.mdoc.errors import IssuerMdocError
    from issuer.mdoc.issuance import make_proof

    ctx, svc = _mdoc_service()
    key_id = hashlib.sha256(spki).hexdigest()
    phone_id = phone if phone is not None else f"cli-{key_id[:16]}"
    try:
        check_phone_id(phone_id)  # before the holder is registered: nothing left half-written
    except HolderError as exc:
        raise _fail(f"--phone: {exc}", as_json=as_json) from None
    with ctx.sessions() as s:  # the same holder and key again: the same record, issued once
        known = s.get(Phone, phone_id)
        holder_row = s.get(Holder, known.holder_id) if known and known.holder_id else None
    if holder_row is not None and holder_row.data == holder_data(parsed):
        holder_id = holder_row.id
    else:
        holder_id = register_holder(ctx.sessions, parsed, actor=cli_actor())
    try:
        attach_phone(ctx.sessions, holder_id, phone_id, actor=cli_actor())
    except HolderError as exc:
        raise _fail(str(exc), 1, as_json) from None
    job = f"cli:{holder_id}:{key_id[:24]}"
    try:
        if private is not None and portrait is None:  # the SE's way: challenge, proof
            spki, proof = make_proof(private, svc.mdoc_challenge(job, phone_id, 0))
            body = svc.issue_mdoc(job, phone_id, 0, spki, proof)
        else:  # a public key (or a portrait, which the registry does not keep): attested
            body = svc.issuer.issue_attested(job, phone_id, 0, spki, portrait=portrait)
    except IssuerMdocError as exc:
        raise _fail(str(exc), 1, as_json) from None
    out.write_bytes(body)
    mso = IssuerSigned.from_cbor(body).mso()
    ref = mso.status.status_list if mso.status else None
    facts = {"out": str(out), "docType": mso.doc_type, "phone": phone_id, "job": job,
             "validFrom": mso.validity_info.valid_from.isoformat(),
             "validUntil": mso.validity_info.valid_until.isoformat(),
             "status": {"idx": ref.idx, "uri": ref.uri} if ref else None}
    if as_json:
        print(json.dumps(facts, ensure_ascii=False))
    else:
        for k, v in facts.items():
            console.print(f"{k}: {v}", highlight=False)


def respond(
    issuer_signed: Path = typer.Option(..., "--issuer-signed", help="IssuerSigned CBOR file."),
    device_key: Path = typer.Option(..., "--device-key", help="The device private key (PEM)."),
    session_transcript: Path = typer.Option(..., "--session-transcript", help="SessionTranscript CBOR (with or without tag 24)."),
    elements: str | None = typer.Option(None, "--elements", help="NS:ID,... to disclose (default all)."),
    out: Path = typer.Option(..., "--out", callback=out_path, help="Where to write the DeviceResponse CBOR."),
) -> None:
    """Wrap an IssuerSigned into a DeviceResponse with a device signature over the transcript."""
    try:
        signed = IssuerSigned.from_cbor(_read(issuer_signed, "IssuerSigned"))
        mso = signed.mso()
    except MdocError as exc:
        raise _fail(f"{issuer_signed}: {exc}") from None
    public, private = _load_key(device_key)
    if private is None:
        raise _fail(f"device key {device_key}: a private key is needed to sign")
    if mso.device_key_info.device_key.public_key().public_numbers() != public.public_numbers():
        raise _fail(f"device key {device_key} is not the MSO's device key", 1)
    disclose = None
    if elements:
        disclose = {}
        for part in elements.split(","):
            ns, sep, ident = part.strip().rpartition(":")
            if not sep or not ns or not ident:
                raise _fail(f"--elements: {part!r} is not NS:ID")
            disclose.setdefault(ns, []).append(ident)
    try:
        doc = build_document(signed, _read(session_transcript, "session transcript"),
                             disclose=disclose, signer=key_signer(private))
    except MdocError as exc:
        raise _fail(f"{session_transcript}: {exc}") from None
    out.write_bytes(DeviceResponse((doc,)).encode())
    console.print(f"DeviceResponse written to {out}", highlight=False)


def export_iaca(
    out: Path = typer.Option(..., "--out", callback=out_path, help="File to write the IACA certificates to."),
    der: bool = typer.Option(False, "--der", help="DER instead of PEM (the current IACA alone: DER holds one)."),
    current: bool = typer.Option(False, "--current", help="The current IACA alone, not the older generations "
                                 "a reader still needs."),
) -> None:
    """Write the mdoc trust anchors a reader needs: the current IACA first, then every older
    IACA generation whose document signers or status-list signers are still valid (after an
    IACA rollover, its mdocs are still presented)."""
    svc = _mdoc_service()[1]
    certs = [svc.iaca_certificate()] if der or current else svc.trusted_iacas()
    if der:
        out.write_bytes(certs[0].public_bytes(serialization.Encoding.DER))
    else:
        out.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs))
    names = "; ".join(c.subject.rfc4514_string() for c in certs)
    console.print(f"IACA {names} written to {out}" if len(certs) == 1
                  else f"{len(certs)} IACAs ({names}) written to {out}", highlight=False)


def export_vical(
    out: Path = typer.Option(..., "--out", callback=out_path, help="File to write the signed VICAL to (CBOR)."),
    ca: Path | None = typer.Option(None, "--ca", callback=out_path, help="Also write the VICAL CAs (PEM) here: "
                                   "what a reader trusts for this issuer's VICALs (mcred reader serve --vical-trust)."),
) -> None:
    """Write the trust bundle as a signed VICAL (ISO/IEC 18013-5 Annex C.1.7): every IACA a
    reader needs now (current, staged, older still vouching), each a trust point for this
    issuer's docType, signed under this installation's VICAL CA; /trust/vical serves the same."""
    from protocols import cbor
    from protocols.cose import Sign1

    svc = _mdoc_service()[1]
    data = svc.vical()
    out.write_bytes(data)
    vical = cbor.loads(Sign1.decode(cbor.loads(data)).payload)
    console.print(f"VICAL {vical['vicalIssueID']} with {len(vical['certificateInfos'])} IACA(s), next update "
                  f"{vical['nextUpdate']:%Y-%m-%d %H:%M} UTC, written to {out}", highlight=False)
    if ca is not None:
        cas = svc.vical_cas()
        ca.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in cas))
        console.print(f"{len(cas)} VICAL CA(s) written to {ca}", highlight=False)


def status_list_show(
    source: str = typer.Argument(..., help="Status list or identifier list URI (http/https), or token file."),
    trust_anchor: Path | None = typer.Option(None, "--trust-anchor", "--trust", help="IACA PEM (a bundle, as mcred export iaca writes it: the IACA that issued the signer is taken): verify the token too."),
    index: list[int] = typer.Option([], "--index", help="Show the status of these indices."),
    revocation: str = typer.Option("crl", "--revocation", help="With --trust-anchor: crl (the signer must "
                                   "not be on the IACA's CRL, fetched from the URL its certificate names, "
                                   "as a reader checks it) or none"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Decode a Status List Token or an Identifier List Token (by its typ), and verify it
    against an IACA when given: the signer's chain, its revocation, the signature, the
    claims."""
    if revocation not in ("crl", "none"):
        raise typer.BadParameter(f"{revocation!r}: crl or none", param_hint="--revocation")
    if source.startswith(("http://", "https://")):
        from reader.fetch import STATUS_LIST_MAX_BYTES, FetchError, fetch

        try:
            reply = fetch(None, "GET", source, max_bytes=STATUS_LIST_MAX_BYTES, timeout=10)
        except FetchError as exc:
            raise _fail(str(exc), as_json=as_json) from None
        if reply.status != 200:
            raise _fail(f"{source}: HTTP {reply.status}", as_json=as_json)
        data, uri = reply.body, source
    else:
        data, uri = _read(Path(source), "token file", as_json), None
    try:
        typ = peek_typ(data)
        if typ == TYP_IDENTIFIER_LIST:
            if index:  # an index would be looked up in nothing and said nowhere
                raise _fail(f"{source}: an identifier list, whose entries are identifiers, not indices: "
                            "leave out --index (it lists them all)", as_json=as_json)
            _identifier_list_show(data, uri, trust_anchor, revocation, as_json)
            return
        token = decode_status_list_token(data)
    except StatusListError as exc:
        raise _fail(f"{source}: {exc}", as_json=as_json) from None
    verified = _verify_with(trust_anchor, revocation, as_json, lambda anchor: verify_status_list_token(
        data, trust_anchor=anchor, uri=uri or token.header.sub, now=dt.datetime.now(dt.UTC)))
    lst = token.status_list
    outside = [i for i in index if not 0 <= i < len(lst)]
    if outside:  # left out of "indices" silently, an answer that read as the list not having them
        raise _fail(f"--index {', '.join(map(str, outside))}: outside the list, whose indices are 0 to "
                    f"{len(lst) - 1}", as_json=as_json)
    counts = {s.name: 0 for s in Status}
    raw_counts = _count(lst.raw, lst.bits)
    for value, n in raw_counts.items():
        name = _status_name(value)
        counts[name] = counts.get(name, 0) + n
    h = token.header
    facts = {"typ": TYP_STATUS_LIST, "sub": h.sub, "iat": h.iat.isoformat(),
             "exp": h.exp.isoformat() if h.exp else None,
             "ttl": h.ttl, "bits": lst.bits, "size": len(lst), "counts": counts,
             "signer": h.signer.subject.rfc4514_string(), "verified": verified,
             "indices": {str(i): lst.get(i) for i in index}}
    _show(facts, verified, as_json)


def _verify_with(trust_anchor: Path | None, revocation: str, as_json: bool, verify) -> str | None:  # noqa: ANN001
    """``valid``, or ``invalid: why``, of a token ``verify(anchor)`` checks (returning it)
    under an IACA in ``trust_anchor`` (a bundle, as `mcred export iaca` writes after an IACA
    rollover: each in turn, as a reader tries its trust store), its signer then looked up on
    that IACA's CRL with ``revocation`` crl (fail closed, as :class:`reader.ds_crl.DsCrlCheck`
    does for a reader); None without a trust anchor."""
    if trust_anchor is None:
        return None
    try:
        anchors = certs.load_pem_all(_read(trust_anchor, "trust anchor", as_json))
    except certs.CertificateParseError as exc:
        raise _fail(f"{trust_anchor}: {exc}", as_json=as_json) from None
    errors: list[str] = []
    for anchor in anchors:
        try:
            token = verify(anchor)
            break
        except StatusListError as exc:
            errors.append(str(exc))
    else:
        return "invalid: " + "; ".join(dict.fromkeys(errors))
    if revocation == "none":
        return "valid (the signer's revocation not checked)"
    from reader.ds_crl import DsCrlCheck

    why = DsCrlCheck().signer_revoked(token.header.signer, anchor, dt.datetime.now(dt.UTC))
    return f"invalid: the signer, {why}" if why else "valid"


def _status_name(value: int) -> str:
    return Status(value).name if value in Status._value2member_map_ else f"0x{value:02X}"


def _show(facts: dict, verified: str | None, as_json: bool) -> None:
    if as_json:
        print(json.dumps(facts, ensure_ascii=False))
    else:
        _show_text(facts)
    if verified and not verified.startswith("valid"):
        raise typer.Exit(1)


def _show_text(facts: dict) -> None:
    for k, v in facts.items():  # a fetched token's claims: a peer's text
        if k == "verified" and v is None:
            v = "not checked (--trust-anchor IACA.pem checks it)"
        elif k == "counts":
            v = ", ".join(f"{name} {n}" for name, n in v.items())
        elif k == "indices":  # each index's status by name, as counts has them (JSON: the number)
            for i, value in v.items():
                console.print(cell(f"index {i}: {_status_name(value)} ({value})"), highlight=False)
            continue
        console.print(cell(f"{k}: {v}"), highlight=False)


def _identifier_list_show(data: bytes, uri: str | None, trust_anchor: Path | None, revocation: str,
                          as_json: bool) -> None:
    """An Identifier List Token (ISO/IEC 18013-5 2nd edition): every listed identifier."""
    token = decode_identifier_list_token(data)
    verified = _verify_with(trust_anchor, revocation, as_json, lambda anchor: verify_identifier_list_token(
        data, trust_anchor=anchor, uri=uri or token.header.sub, now=dt.datetime.now(dt.UTC)))
    h, ids = token.header, sorted(i.hex() for i in token.identifier_list.identifiers)
    facts = {"typ": TYP_IDENTIFIER_LIST, "sub": h.sub, "iat": h.iat.isoformat(),
             "exp": h.exp.isoformat() if h.exp else None, "ttl": h.ttl,
             "signer": h.signer.subject.rfc4514_string(), "verified": verified,
             "count": len(ids), "identifiers": ids,
             "aggregation_uri": token.identifier_list.aggregation_uri}
    if not as_json and len(ids) > 50:
        facts["identifiers"] = ids[:50] + [f"... {len(ids) - 50} more (--json lists all)"]
    _show(facts, verified, as_json)


def _count(raw: bytes, bits: int) -> dict[int, int]:
    """How many entries hold each status value (byte histogram, then per entry)."""
    hist = [0] * 256
    for b in raw:  # fine for tools; 100 M entries is 12.5 MB of loop
        hist[b] += 1
    per, mask, out = 8 // bits, (1 << bits) - 1, {}
    for byte, n in enumerate(hist):
        if n:
            for k in range(per):
                v = (byte >> (k * bits)) & mask
                out[v] = out.get(v, 0) + n
    return out


def _credential_facts(c: Credential) -> dict:
    return {"id": c.id, "kind": c.kind, "status": c.status, "reason": c.reason,
            "phone": c.phone_id, "holder": c.holder_id,
            "not_before": c.not_before.isoformat(), "not_after": c.not_after.isoformat(),
            "serial": c.serial, "issuer_key": c.issuer_key,
            "status_list": c.status_list_id, "status_idx": c.status_idx, "job": c.job_ref,
            "meta": c.meta}


def _key_type(kind: str, body: bytes | None) -> str | None:
    """rsa2048 or p384 for a JPKI certificate (from its public key), None for an mdoc;
    ``unreadable`` for a stored body that is no certificate (a damaged row: listed, not a
    traceback that stops the listing)."""
    if not kind.startswith("jpki-") or not body:
        return None
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    from protocols.certs import CertificateParseError, load_der

    try:
        key = load_der(body).public_key()
    except CertificateParseError:
        return "unreadable"
    if isinstance(key, rsa.RSAPublicKey):
        return f"rsa{key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return {"secp384r1": "p384", "secp256r1": "p256"}.get(key.curve.name, key.curve.name)
    return type(key).__name__


#: the values of ``credential list --kind`` and ``--status`` (the ``kind`` and ``status`` of a
#: registry credential, as ``GET /credentials`` takes them)
CREDENTIAL_KINDS = ("mdoc", "jpki-sign", "jpki-auth")
CREDENTIAL_STATUSES = ("valid", "hold", "revoked")


def credential_list(
    phone: str | None = typer.Option(None, "--phone"),
    kind: str | None = typer.Option(None, "--kind", help="mdoc, jpki-sign or jpki-auth."),
    status: str | None = typer.Option(None, "--status", help="valid, hold or revoked."),
    key_type: str | None = typer.Option(None, "--key-type", help="Only JPKI certificates with this key: "
                                        "rsa2048 or p384 (`--key-type rsa2048 --status valid`: what is "
                                        "still to move off RSA-2048 before 2030; mcred holder renew-card)."),
    expiring_within: int = typer.Option(None, "--expiring-within", min=0, max=NOTICE_MAX_DAYS, metavar="DAYS",
                                        help="Only valid JPKI certificates whose expiry falls within DAYS days from "
                                        "now, or has passed (not yet renewed), soonest first: whose holders need an "
                                        "expiry notice (有効期限通知書; 90: the renewal window, mcred jpki renew). "
                                        f"At most {NOTICE_MAX_DAYS} (ten years: no certificate runs longer)."),
    limit: int = typer.Option(None, "--limit", min=1, help="At most this many (oldest first)."),
    offset: int = typer.Option(0, "--offset", min=0, help="Skip this many first."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List issued credentials (JPKI certificates and mdocs), oldest first. A certificate
    revoked with an abandoned renewal whose slot is still to be renewed says so ("renewal
    needed", with the command; renewal_needed in --json), as does a signing certificate revoked
    with an abandoned issue-sign whose phone is still to be issued one ("signing certificate
    to issue", with the command; sign_issue_needed in --json)."""
    import itertools

    from sqlalchemy import case, select
    from sqlalchemy.orm import defer

    from issuer.db import Credential, unindexed

    # a value no credential can have (`--status revoke`, `--kind sign`) said "no credential" and
    # exit 0, a typo passing for an empty registry; the choices GET /credentials refuses with 422
    for option, value, choices in (("--kind", kind, CREDENTIAL_KINDS), ("--status", status, CREDENTIAL_STATUSES),
                                   ("--key-type", key_type, ("rsa2048", "p384"))):
        if value is not None and value not in choices:
            raise typer.BadParameter(f"{value!r}: one of {', '.join(choices)}", param_hint=option)
    if expiring_within is not None:  # the rule GET /credentials applies, said in the options' words
        from issuer.expiry_notices import NoticeQueryError, check_filters

        try:
            check_filters(kind, status)
        except NoticeQueryError:
            raise fail("--expiring-within lists valid JPKI certificates (an mdoc's MSO is refreshed, not "
                       "renewed): leave out --kind mdoc and --status other than valid", as_json) from None
    ctx = open_context()
    # a JPKI certificate's body is read for its key type; an mdoc's IssuerSigned is not read
    certificate = case((Credential.kind.in_(("jpki-sign", "jpki-auth")), Credential.body)).label("certificate")
    q = select(Credential, certificate).options(defer(Credential.body)).order_by(Credential.issued_at, Credential.id)
    if key_type is None:
        q = q.offset(offset).limit(limit)
    else:
        q = q.where(unindexed(Credential.kind).in_(("jpki-sign", "jpki-auth")))  # read in issuance order
    if phone:
        q = q.where(Credential.phone_id == phone)
    if expiring_within is not None:  # soonest first, as the notices go out (as GET /credentials lists them)
        from issuer.expiry_notices import expiring

        q = expiring(q, expiring_within, kind)
    else:  # filters of the rows read in issuance order (ix_credential_issued), not ix_credential_expiry's kind
        if kind:
            q = q.where(unindexed(Credential.kind) == kind)
        if status:
            q = q.where(Credential.status == status)

    def read():  # a batch at a time, each row written as read: never every credential in memory
        from issuer.revocation import needing_renewal, needing_sign_issue

        with ctx.sessions() as s, ctx.sessions() as look:
            for c, cert in s.execute(q.execution_options(yield_per=500)):
                # a certificate revoked with an abandoned renewal (issue-sign): is its slot still to
                # be renewed (issued)? (the rule GET /credentials applies)
                yield {**_credential_facts(c), "key_type": _key_type(c.kind, cert),
                       "renewal_needed": bool(needing_renewal(look, [c])),
                       "sign_issue_needed": bool(needing_sign_issue(look, [c]))}

    rows = read()
    if key_type is not None:  # read off each certificate, then the page
        rows = itertools.islice((r for r in rows if r["key_type"] == key_type), offset,
                                None if limit is None else offset + limit)
    if as_json:
        echo_json_array(rows)
        return
    n = 0
    # one line per credential, never cut: the id is what `credential show` takes
    for r in rows:
        n += 1
        ref = f"status {r['status_list']}#{r['status_idx']}" if r["status_list"] else f"serial {r['serial']}"
        state = r["status"] + (f" ({r['reason']})" if r["reason"] else "")
        key = f"  {r['key_type']}" if r["key_type"] else ""
        holder = f"  holder {r['holder']}" if expiring_within is not None else ""
        needed = (f"  renewal needed (renewal abandoned: mcred jpki renew --phone {r['phone']} --slot "
                  f"{r['kind'].removeprefix('jpki-')})" if r["renewal_needed"] else "")
        if r["sign_issue_needed"]:
            needed += f"  signing certificate to issue (issue-sign abandoned: mcred jpki issue-sign --phone {r['phone']})"
        typer.echo(f"{r['id']}  {r['kind']:<9}  {state}  {r['phone']}  until {r['not_after'][:10]}  {ref}{key}{holder}"
                   f"{needed}")
    if not n:
        typer.echo("no credential" + (f" on {phone}" if phone else "") + (f" of kind {kind}" if kind else "")
                   + (f" {status}" if status else "") + (f" with a {key_type} key" if key_type else "")
                   + (f" expiring within {expiring_within} days" if expiring_within is not None else ""))


def credential_show(
    credential_id: str = typer.Argument(...),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Show one credential; for an mdoc also its MSO (docType, validity, status reference). A
    certificate revoked with an abandoned renewal whose slot is still to be renewed says so
    (renewal_needed, as in credential list and GET /credentials/{id}), as does one revoked with
    an abandoned issue-sign whose phone is still to be issued one (sign_issue_needed)."""
    from issuer.db import Credential
    from issuer.revocation import needing_renewal, needing_sign_issue

    ctx = open_context()
    with ctx.sessions() as s:
        c = s.get(Credential, credential_id)
        if c is None:
            raise _fail(f"no credential {credential_id!r}", 2, as_json)  # an id that is not: the input, as phone show
        facts = {**_credential_facts(c), "renewal_needed": bool(needing_renewal(s, [c])),
                 "sign_issue_needed": bool(needing_sign_issue(s, [c]))}
        body = c.body
    if facts["kind"] == "mdoc" and not body:
        facts["mso"] = "erased with its holder's personal data (mcred holder forget)"
    elif facts["kind"] == "mdoc":
        mso = IssuerSigned.from_cbor(body).mso()
        facts["mso"] = {"docType": mso.doc_type, "digestAlgorithm": mso.digest_algorithm,
                        "validFrom": mso.validity_info.valid_from.isoformat(),
                        "validUntil": mso.validity_info.valid_until.isoformat(),
                        "status": _hex_bytes(mso.status.to_map()) if mso.status else None}
    if as_json:
        print(json.dumps(facts, ensure_ascii=False))
        return
    print_tree(facts)


def _key_state(r) -> str:  # noqa: ANN001 - a SignerInfo or VicalSignerInfo
    """``  key destroyed YYYY-MM-DD HH:MMZ`` for a signer whose key was destroyed, else nothing."""
    return f"  key destroyed {r.key_destroyed_at:%Y-%m-%d %H:%M}Z" if r.key_destroyed_at else ""


def _signer_table(rows: list, signs: str = "mdocs") -> None:
    """One plain line per signer generation: label and serial whole (the revoke commands
    take either), validity, state, whether its key was destroyed, and for a DS the valid
    mdocs it signed."""
    for r in rows:
        state = (f"revoked ({r.reason}, {r.revoked_at:%Y-%m-%d %H:%M}Z)" if r.revoked_at
                 else "active" if r.active else "retired")
        typer.echo(f"{r.label}  serial {r.serial}  until {r.not_after:%Y-%m-%d}  {state}{_key_state(r)}"
                   + (f"  {r.affected_mdocs} valid mdoc(s) signed" if signs == "mdocs" else ""))


def ds_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """Every document-signer generation: serial, validity, active / retired / revoked."""
    svc = _mdoc_service()[1]
    svc.setup()
    rows = svc.signers()
    if as_json:
        print(json.dumps([r.to_json() for r in rows], ensure_ascii=False))
    else:
        _signer_table(rows)


def ds_rollover(as_json: bool = typer.Option(False, "--json")) -> None:
    """Start a new document-signer generation now (the old one stays valid for its MSOs)."""
    svc = _mdoc_service()[1]
    svc.setup()
    active = svc.rollover_ds()
    info = next(r for r in svc.signers() if r.label == active.label)
    if as_json:
        print(json.dumps(info.to_json(), ensure_ascii=False))
    else:
        console.print(f"new document signer {info.label} serial {info.serial}", highlight=False)


def iaca_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """Every IACA generation: serial, validity, current / staged / retired / revoked, and the
    valid mdocs its document signers signed."""
    from issuer.mdoc.pki import PURPOSE_IACA

    svc = _mdoc_service()[1]
    svc.setup()
    rows = svc.signers(PURPOSE_IACA)
    trusted = {format(c.serial_number, "x") for c in svc.trusted_iacas()}
    staged = svc.staged_iaca()

    def state(r) -> str:  # noqa: ANN001
        if r.revoked_at is not None:
            return "revoked"
        if r.active:
            return "current"
        if staged is not None and r.label == staged.label:
            return "staged"
        return "retired"

    if as_json:
        print(json.dumps([{**r.to_json(), "trusted": r.serial in trusted, "state": state(r)} for r in rows],
                         ensure_ascii=False))
        return
    for r in rows:
        shown = {"staged": "staged: in the trust bundle, vouching for nothing until the rollover",
                 "retired": "retired, still a trust anchor" if r.serial in trusted else "retired",
                 "revoked": f"revoked ({r.reason}) {r.revoked_at:%Y-%m-%d %H:%M} UTC, out of the trust bundle"
                 if r.revoked_at else ""}.get(state(r), state(r))
        typer.echo(f"{r.label}  serial {r.serial}  until {r.not_after:%Y-%m-%d}  {shown}{_key_state(r)}"
                   f"  {r.affected_mdocs} valid mdoc(s)")


def iaca_stage(as_json: bool = typer.Option(False, "--json")) -> None:
    """Make the next IACA generation and publish it in the trust bundle, without starting it.

    The current IACA goes on issuing; readers that take the bundle (mcred export iaca, or
    /trust/iaca.pem) from now on already trust the staged IACA when `mcred mdoc iaca
    rollover` starts it, so its first mdocs verify everywhere at once. One staged
    generation at a time."""
    from issuer.mdoc.errors import IssuerMdocError

    svc = _mdoc_service()[1]
    svc.setup()
    try:
        staged = svc.stage(actor=cli_actor())
    except IssuerMdocError as exc:  # one staged already, or no IACA yet: nothing was made
        raise _fail(str(exc), 2, as_json) from None
    root, info = staged.iaca, staged.to_json()
    if as_json:
        print(json.dumps(info, ensure_ascii=False))
        return
    console.print(f"staged IACA {root.label} serial {info['serial']} until {info['not_after'][:10]}; "
                  f"{info['current']} goes on issuing", highlight=False)
    console.print("[yellow]give readers the new trust bundle now (mcred export iaca --out FILE, or "
                  "/trust/iaca.pem), then start it: mcred mdoc iaca rollover[/]")


def iaca_rollover(as_json: bool = typer.Option(False, "--json")) -> None:
    """Start the next IACA generation now, with its document signer and status-list signer.

    The staged generation (mcred mdoc iaca stage) when there is one: readers that took the
    bundle since it was staged already trust it. Else a new one, and new mdocs chain to it at
    once: give readers the new trust bundle (mcred export iaca, or /trust/iaca.pem) before
    issuing. The older IACA stays valid for the mdocs it vouches for; its CRL and status
    lists are still published."""
    from issuer.mdoc.errors import IssuerMdocError

    svc = _mdoc_service()[1]
    svc.setup()
    try:
        r = svc.rollover(actor=cli_actor())
    except IssuerMdocError as exc:  # e.g. a staged IACA itself in its last months: nothing was started
        raise _fail(str(exc), 2, as_json) from None
    root, ds, status = r.iaca, r.ds, r.status_signer
    info = r.to_json()
    if as_json:
        print(json.dumps(info, ensure_ascii=False))
        return
    made = f"staged IACA {root.label} started" if r.staged_since else f"new IACA {root.label}"
    console.print(f"{made} serial {info['serial']} until {info['not_after'][:10]}, with "
                  f"document signer {ds.label} and status-list signer {status.label}", highlight=False)
    if r.staged_since:
        console.print(f"it has been in the trust bundle since {r.staged_since:%Y-%m-%d %H:%M} UTC: "
                      "readers that took the bundle since then trust its mdocs", highlight=False)
    else:
        console.print("[yellow]readers need the new IACA before they see its mdocs: mcred export iaca "
                      "--out FILE (every IACA they need), or /trust/iaca.pem (mcred mdoc iaca stage "
                      "publishes the next one ahead of its use)[/]")


def _said_unchanged_or_amended(info, changed: bool, amended_from: str | None,  # noqa: ANN001 - a SignerInfo
                               where: str = "") -> bool:
    """A revocation that changed nothing ("already revoked") or amended an earlier reason,
    said; True when that was all there was to say (``where``: whose CRL says it from now on)."""
    if not changed:
        console.print(f"{info.label} was already revoked ({info.reason})", highlight=False)
        return True
    if amended_from is not None:
        console.print(f"{info.label} serial {info.serial}: revoked ({amended_from}) -> revoked ({info.reason}), "
                      f"amended (its revocation time kept){f'; {where} says so from now on' if where else ''}",
                      highlight=False)
        return True
    return False


def iaca_revoke(
    iaca_ref: str = typer.Argument(..., metavar="IACA", help="The IACA generation: its number (2), label "
                                   "(mdoc-iaca-2) or certificate serial (hex), as mcred mdoc iaca list shows."),
    reason: str = typer.Option(..., "--reason", help="cACompromise (the IACA's key known or suspected in other "
                               "hands), keyCompromise, superseded, cessationOfOperation, affiliationChanged, "
                               "privilegeWithdrawn or unspecified."),
    destroy_key: bool = typer.Option(False, "--destroy-key", help="Then destroy its private key in the key "
                                     "store (mcred mdoc key destroy): its certificate stays published."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Take an IACA out of trust: out of the trust bundle (/trust/iaca.pem) and the VICAL at
    once, and its key signs nothing more (no signer, CRL or status list).

    A root cannot be listed on a CRL, its own being signed by the key in question: readers
    drop it when they next take the VICAL or the bundle, and from then on refuse every mdoc
    and status list under it. The current IACA is replaced in the same step by the staged
    generation (mcred mdoc iaca stage; readers that took the bundle since then trust it
    already), else by a new one that readers need at once. Its phones then need new MSOs:
    mcred mdoc reissue --signer IACA."""
    from issuer.keystore import KeyStoreError
    from issuer.mdoc.errors import IssuerMdocError, UnknownIaca

    svc = _mdoc_service()[1]
    svc.setup()
    try:
        done = svc.revoke_iaca(iaca_ref, reason, actor=cli_actor(), destroy_key=destroy_key)
    except UnknownIaca as exc:
        raise _fail(str(exc), 2, as_json) from None
    except IssuerMdocError as exc:  # the reason, or the successor cannot be made: nothing was changed
        raise _fail(str(exc), 2, as_json) from None
    except KeyStoreError as exc:  # revoked (committed), the key not destroyed: run it again
        raise _fail(f"revoked, but its key was not destroyed: {exc} (mcred mdoc key destroy {iaca_ref})",
                    2, as_json) from None
    info = done.info
    if as_json:
        print(json.dumps(done.to_json(), ensure_ascii=False))
        return
    if _said_unchanged_or_amended(info, done.changed, done.amended_from):
        _said_destroyed(done.key_destruction)
        return
    console.print(f"{info.label} serial {info.serial} revoked ({info.reason}): out of the trust bundle and the "
                  "VICAL from now on; it signs nothing more", highlight=False)
    if done.retired_signers:
        console.print(f"retired with it: {', '.join(done.retired_signers)}", highlight=False)
    r = done.successor
    if r is not None:
        if r.staged_since is not None:
            console.print(f"the staged IACA {r.iaca.label} (in the bundle since {r.staged_since:%Y-%m-%d %H:%M} UTC) "
                          f"started in its place, with document signer {r.ds.label} and status-list signer "
                          f"{r.status_signer.label}", highlight=False)
        else:
            console.print(f"new IACA {r.iaca.label} started in its place, with document signer {r.ds.label} and "
                          f"status-list signer {r.status_signer.label}", highlight=False)
            console.print("[yellow]readers need it before they see its mdocs: mcred export iaca --out FILE, "
                          "/trust/iaca.pem or the VICAL (/trust/vical)[/]")
    if done.affected_phones:
        console.print(f"[yellow]{info.affected_mdocs} valid mdoc(s) on {len(done.affected_phones)} phone(s) are "
                      f"refused from now on: mcred mdoc reissue --signer {info.label}[/]")
    _said_destroyed(done.key_destruction)


def reissue(
    signer: str = typer.Option(..., "--signer", help="The revoked or retired signer whose mdocs to replace: a "
                               "document signer (label or serial) or an IACA (number, label or serial)."),
    workers: int = typer.Option(4, "--workers", min=1, max=32, help="Phones refreshed at a time."),
    as_json: bool = typer.Option(False, "--json"),
    over_the_air: bool = OVER_THE_AIR,
    listen: str = LISTEN,
    public_url: str = PUBLIC_URL,
    session_id: str = SESSION_ID,
    ssl_certfile: Path = SSL_CERTFILE,
    ssl_keyfile: Path = SSL_KEYFILE,
    connect_timeout: float = CONNECT_TIMEOUT,
) -> None:
    """Issue new MSOs into every phone holding a valid mdoc of a signer taken out of use
    (mcred mdoc ds revoke, mcred mdoc iaca revoke, or a rollover), each as mcred mdoc
    refresh does: new device keys in the SE, the old MSOs superseded. A phone refused is
    reported and stops no other; run it again to go on (only the phones still holding such
    an mdoc are taken). With --over-the-air each phone whose SE is not in this data
    directory is reached through its GP SERAM Local Agent, in a session of its own on the one
    endpoint (each announced); one whose agent does not join in time is reported unreached.
    Exit 0 once every such phone holds new MSOs, 1 while any is left."""
    from issuer.mdoc.errors import UnknownSigner
    from mcred.context import Context
    from mcred.provision import ProvisionError
    from mcred.reissue import ON_HOLD, REISSUED, phones_away, reissue_signed_by

    ota = over_the_air_options(over_the_air, listen, public_url, session_id, ssl_certfile, ssl_keyfile, as_json,
                               connect_timeout=connect_timeout)
    ctx = Context.open()

    def said(p, _done: int, _total: int) -> None:  # noqa: ANN001 - a PhoneReissue
        if not as_json:
            mark = "[green]reissued[/]" if p.outcome == REISSUED else f"[red]{p.outcome}[/]"
            extra = f" job {p.job_id}, {p.mdocs} MSO(s)" if p.outcome == REISSUED else f": {escape(p.detail)}"
            console.print(f"  {p.phone_id}: {mark}{extra}", highlight=False)

    try:
        if ota is None:
            report = reissue_signed_by(ctx, signer, actor=cli_actor(), workers=workers, progress=said)
        else:  # the phones not here, each in a session of its own, opened before the endpoint answers
            with ota.sessions(phones_away(ctx, signer)) as links:
                report = reissue_signed_by(ctx, signer, actor=cli_actor(), workers=workers, progress=said,
                                           links=links)
    except UnknownSigner as exc:
        raise _fail(str(exc), 2, as_json) from None
    except ProvisionError as exc:
        raise _fail(str(exc), 2, as_json) from None
    if as_json:
        print(json.dumps(report.to_json(), ensure_ascii=False))
    elif not report.phones:
        console.print(f"no phone holds a valid mdoc of {report.signer}: nothing to re-issue", highlight=False)
    else:
        j = report.to_json()
        for p in report.phones:
            if p.outcome == ON_HOLD:
                said(p, 0, 0)
        unreached = f", {j['unreached']} not reached over the air" if ota is not None or j["unreached"] else ""
        console.print(f"{report.signer}: {j['reissued']} phone(s) re-issued, {j['refused']} refused, "
                      f"{j['not_here']} not on this machine, {j['on_hold']} on hold{unreached}, in "
                      f"{report.seconds:.2f} s", highlight=False)
    if not report.done:
        raise typer.Exit(1)


def ds_revoke(
    ds: str = typer.Argument(..., help="The document signer: its label (mdoc-ds-2) or its certificate serial (hex)."),
    reason: str = typer.Option(..., "--reason", help="keyCompromise, superseded, cessationOfOperation, affiliationChanged, privilegeWithdrawn or unspecified."),
    destroy_key: bool = typer.Option(False, "--destroy-key", help="Then destroy its private key in the key "
                                     "store (mcred mdoc key destroy): its certificate stays published."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Revoke a document-signer certificate: the IACA CRL (/trust/iaca.crl) lists it.

    A revoked active signer is replaced by a new generation at the next issuance."""
    from issuer.mdoc.pki import PURPOSE_DS

    _revoke_signer(ds, reason, as_json, PURPOSE_DS, destroy_key)


def status_signer_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """Every status-list signer generation: serial, validity, active / retired / revoked."""
    from issuer.mdoc.pki import PURPOSE_STATUS

    svc = _mdoc_service()[1]
    svc.setup()
    rows = svc.signers(PURPOSE_STATUS)
    if as_json:
        print(json.dumps([r.to_json() for r in rows], ensure_ascii=False))
    else:
        _signer_table(rows, signs="lists")


def status_signer_revoke(
    signer: str = typer.Argument(..., help="The status-list signer: its label (mdoc-status-1) or its certificate serial (hex)."),
    reason: str = typer.Option(..., "--reason", help="keyCompromise, superseded, cessationOfOperation, affiliationChanged, privilegeWithdrawn or unspecified."),
    destroy_key: bool = typer.Option(False, "--destroy-key", help="Then destroy its private key in the key "
                                     "store (mcred mdoc key destroy): its certificate stays published."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Revoke a status-list signer certificate: the IACA CRL lists it, and every published
    Status / Identifier List Token is re-signed by a new signer generation at its next request
    (readers checking the IACA CRL refuse lists signed by the revoked one)."""
    from issuer.mdoc.pki import PURPOSE_STATUS

    _revoke_signer(signer, reason, as_json, PURPOSE_STATUS, destroy_key)


def _revoke_signer(ref: str, reason: str, as_json: bool, purpose: str, destroy_key: bool = False) -> None:
    from issuer.keystore import KeyStoreError
    from issuer.mdoc.errors import SignerRevocationError, UnknownSigner
    from issuer.mdoc.pki import PURPOSE_STATUS

    svc = _mdoc_service()[1]
    svc.setup()
    try:
        done = svc.revoke_signer_detail(ref, reason, actor=cli_actor(), purposes=(purpose,), destroy_key=destroy_key)
    except (UnknownSigner, SignerRevocationError) as exc:
        raise _fail(str(exc), 2, as_json) from None
    except KeyStoreError as exc:  # revoked (committed), the key not destroyed: run it again
        raise _fail(f"revoked, but its key was not destroyed: {exc} (mcred mdoc key destroy {ref})",
                    2, as_json) from None
    info, changed = done.info, done.changed
    if as_json:
        print(json.dumps({**info.to_json(), "changed": changed,
                          **({"amended_from": done.amended_from} if done.amended_from else {})}, ensure_ascii=False))
        return
    if _said_unchanged_or_amended(info, changed, done.amended_from, "the IACA CRL"):
        _said_destroyed(done.key_destruction)
        return
    console.print(f"{info.label} serial {info.serial} revoked ({reason}); the IACA CRL lists "
                  f"it from now on", highlight=False)
    if purpose == PURPOSE_STATUS:
        console.print("the status and identifier lists are re-signed by a new signer generation "
                      "at their next request", highlight=False)
    elif info.affected_mdocs:
        console.print(f"[yellow]{info.affected_mdocs} valid mdoc(s) were signed by it: readers "
                      f"checking the IACA CRL refuse them; issue new ones (mcred mdoc reissue "
                      f"--signer {info.label})[/]")
    _said_destroyed(done.key_destruction)


def vical_signer_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """Every VICAL signer generation: serial, validity, signing / retired / revoked, its VICAL
    CA and the CRL distribution point its certificate names (where readers look it up)."""
    rows = _mdoc_service()[1].vical_signers()
    if as_json:
        print(json.dumps([r.to_json() for r in rows], ensure_ascii=False))
        return
    if not rows:
        console.print("no VICAL signer yet: the first is made with the first VICAL (mcred export vical, "
                      "/trust/vical)", highlight=False)
    for r in rows:
        state = (f"revoked ({r.reason}, {r.revoked_at:%Y-%m-%d %H:%M}Z)" if r.revoked_at
                 else "signing" if r.active else "retired")
        typer.echo(f"{r.label}  serial {r.serial}  until {r.not_after:%Y-%m-%d}  {state}{_key_state(r)}  under {r.ca}"
                   f"  CRL {r.crl or '(none named: made before VICAL signers carried one)'}")


def vical_signer_revoke(
    signer: str = typer.Argument(..., metavar="LABEL|SERIAL", help="The VICAL signer: its label "
                                 "(mdoc-vical-signer-1) or its certificate serial (hex), as mcred mdoc vical-signer "
                                 "list shows."),
    reason: str = typer.Option(..., "--reason", help="keyCompromise, superseded, cessationOfOperation, "
                               "affiliationChanged, privilegeWithdrawn or unspecified."),
    destroy_key: bool = typer.Option(False, "--destroy-key", help="Then destroy its private key in the key "
                                     "store (mcred mdoc key destroy): its certificate stays published."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Revoke a VICAL signer certificate: it signs nothing more, the VICAL (/trust/vical) is
    re-signed at once by a new signer generation, and the VICAL CA's CRL (/trust/vical-ca.crl)
    lists it, so a reader that imports a VICAL looks its signer up there and refuses one the
    revoked key signed. keyCompromise amends a revocation made for another reason."""
    from issuer.keystore import KeyStoreError
    from issuer.mdoc.errors import IssuerMdocError, SignerRevocationError, UnknownSigner

    svc = _mdoc_service()[1]
    try:
        done = svc.revoke_vical_signer(signer, reason, actor=cli_actor(), destroy_key=destroy_key)
    except (UnknownSigner, SignerRevocationError) as exc:
        raise _fail(str(exc), 2, as_json) from None
    except IssuerMdocError as exc:  # the next signer cannot be made: nothing was changed
        raise _fail(str(exc), 2, as_json) from None
    except KeyStoreError as exc:  # revoked (committed), the key not destroyed: run it again
        raise _fail(f"revoked, but its key was not destroyed: {exc} (mcred mdoc key destroy {signer})",
                    2, as_json) from None
    info = done.info
    if as_json:
        print(json.dumps(done.to_json(), ensure_ascii=False))
        return
    if _said_unchanged_or_amended(info, done.changed, done.amended_from, "the VICAL CA's CRL"):
        _said_destroyed(done.key_destruction)
        return
    where = f" ({info.crl})" if info.crl else ""
    console.print(f"{info.label} serial {info.serial} revoked ({info.reason}); the VICAL CA's CRL{where} "
                  "lists it from now on", highlight=False)
    console.print(f"the VICAL is signed by {done.signing.label} serial {done.signing.serial} from now on "
                  f"(vicalIssueID {done.vical_issue_id})", highlight=False)
    if info.crl is None:
        console.print("[yellow]its certificate names no CRL distribution point (made before they carried one): "
                      "readers cannot look it up; if its key is in other hands, withdraw its VICAL CA (mcred mdoc "
                      "vical-ca rollover --compromised) and give readers the new one (/trust/vical-ca.pem)[/]")
    _said_destroyed(done.key_destruction)


def vical_ca_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """Every VICAL CA generation: serial, validity, current / staged / retired / withdrawn,
    whether readers trust it now (/trust/vical-ca.pem), the VICAL signers it certified and the
    CRL they name."""
    rows = _mdoc_service()[1].vical_ca_list()
    if as_json:
        print(json.dumps([r.to_json() for r in rows], ensure_ascii=False))
        return
    if not rows:
        console.print("no VICAL CA yet: the first is made with the first VICAL (mcred export vical, "
                      "/trust/vical)", highlight=False)
    for r in rows:
        state = {"current": "current",
                 "staged": "staged: in /trust/vical-ca.pem, certifying nothing until the rollover",
                 "retired": "retired, still a VICAL anchor" if r.trusted else "retired",
                 "withdrawn": f"withdrawn ({r.reason}, {r.revoked_at:%Y-%m-%d %H:%M}Z), out of /trust/vical-ca.pem"
                 if r.revoked_at else "withdrawn"}[r.state]
        typer.echo(f"{r.label}  serial {r.serial}  until {r.not_after:%Y-%m-%d}  {state}{_key_state(r)}"
                   f"  signers {', '.join(r.signers) or '(none)'}  CRL {r.crl}")


def vical_ca_stage(as_json: bool = typer.Option(False, "--json")) -> None:
    """Make the next VICAL CA generation and publish it in /trust/vical-ca.pem at once, after
    the current one, without starting it.

    The current VICAL CA and its signer go on signing the VICAL; readers that put
    /trust/vical-ca.pem (mcred export vical --ca) into their --vical-trust file from now on
    take the VICALs signed under the staged CA once `mcred mdoc vical-ca rollover` starts it
    (or the automatic rollover in the current CA's last 90 days), with nothing more to do.
    One staged generation at a time; the VICAL CA stages the next one by itself in its last
    180 days."""
    from issuer.mdoc.errors import IssuerMdocError

    svc = _mdoc_service()[1]
    try:
        done = svc.stage_vical_ca(actor=cli_actor())
    except IssuerMdocError as exc:  # one staged already, or no VICAL CA yet: nothing was made
        raise _fail(str(exc), 2, as_json) from None
    if as_json:
        print(json.dumps(done.to_json(), ensure_ascii=False))
        return
    staged = done.staged
    console.print(f"staged VICAL CA {staged.label} serial {staged.serial} until {staged.not_after:%Y-%m-%d}; "
                  f"{done.current} goes on certifying the VICAL signer", highlight=False)
    console.print("[yellow]give readers of the VICAL the new anchors now (/trust/vical-ca.pem, mcred export vical "
                  "--ca, into their --vical-trust file), then start it: mcred mdoc vical-ca rollover[/]")


def vical_ca_rollover(
    compromised: bool = typer.Option(False, "--compromised", help="The VICAL CA's key (or that of a VICAL signer "
                                     "readers cannot look up) is known or suspected in other hands: withdraw it at "
                                     "once (out of /trust/vical-ca.pem, its CRL gone, its signers revoked, "
                                     "cACompromise) instead of retiring it. The staged CA starts in its place."),
    fresh: bool = typer.Option(False, "--fresh", help="With --compromised: the compromise may reach the staged "
                               "VICAL CA's key too (the key store, its passphrase, the host or token, not one key): "
                               "withdraw the staged CA as well and make a new one (readers need it at once)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Start the next VICAL CA generation with a new VICAL signer under it; the VICAL
    (/trust/vical) is re-signed by that signer at once, its vicalIssueID higher than any before.

    The staged generation (mcred mdoc vical-ca stage) when there is one: readers that took
    /trust/vical-ca.pem since it was staged take the new VICAL at once. Else a new one, which
    readers of the VICAL need from now on: /trust/vical-ca.pem (or mcred export vical --ca)
    into their --vical-trust file. Without --compromised the CA before is retired: still
    listed in /trust/vical-ca.pem while a signer it certified is valid and not revoked, its CRL
    still published. With --compromised it is withdrawn: a CA cannot be listed on its own CRL,
    so readers drop it by taking the new /trust/vical-ca.pem; its key signs nothing more (its
    CRL answers 410) and may then be destroyed (mcred mdoc key destroy)."""
    from issuer.mdoc.errors import IssuerMdocError

    svc = _mdoc_service()[1]
    try:
        done = svc.rollover_vical_ca(compromised=compromised, fresh=fresh, actor=cli_actor())
    except IssuerMdocError as exc:  # no VICAL CA yet, --fresh alone, or the new one cannot be made: nothing changed
        raise _fail(str(exc), 2, as_json) from None
    if as_json:
        print(json.dumps(done.to_json(), ensure_ascii=False))
        return
    old, new = done.previous, done.current
    made = f"staged VICAL CA {new.label} started" if done.staged_since else f"new VICAL CA {new.label}"
    console.print(f"{made} serial {new.serial} until {new.not_after:%Y-%m-%d}; the VICAL is signed "
                  f"by {done.signing.label} under it from now on (vicalIssueID {done.vical_issue_id})",
                  highlight=False)
    if done.staged_since:
        console.print(f"it has been in /trust/vical-ca.pem since {done.staged_since:%Y-%m-%d %H:%M} UTC: readers "
                      "that took it since then take the new VICAL at once", highlight=False)
    if done.withdrawn_staged:
        console.print(f"the staged {done.withdrawn_staged} withdrawn with it (cACompromise): out of "
                      "/trust/vical-ca.pem", highlight=False)
    if done.withdrawn:
        console.print(f"{old.label} withdrawn (cACompromise): out of /trust/vical-ca.pem, its CRL gone, it signs "
                      "nothing more" + (f"; revoked with it: {', '.join(done.revoked_signers)}"
                                        if done.revoked_signers else ""), highlight=False)
        keys = " ".join([old.label] + ([done.withdrawn_staged] if done.withdrawn_staged else []))
        console.print("[yellow]readers of the VICAL drop it only once they take /trust/vical-ca.pem (mcred export "
                      "vical --ca) again: give it to them now"
                      + ("" if done.staged_since else f" (they refuse the new VICAL until they hold {new.label})")
                      + f"; then destroy the key: mcred mdoc key destroy {keys}[/]")
    else:
        console.print(f"{old.label} retired: still in /trust/vical-ca.pem while a signer it certified is valid"
                      + (f" ({', '.join(done.retired_signers)} retired)" if done.retired_signers else ""),
                      highlight=False)
        if not done.staged_since:
            console.print(f"[yellow]readers had no warning: they refuse the new VICAL until they hold {new.label}; "
                          "give them /trust/vical-ca.pem (mcred export vical --ca) now (mcred mdoc vical-ca stage "
                          "publishes the next one ahead of its use)[/]")


def _said_destroyed(done) -> None:  # noqa: ANN001 - a KeyDestructionResult or None
    """What became of a signer's key asked to be destroyed (``--destroy-key``, ``mcred mdoc
    key destroy``): destroyed now, found gone, or destroyed before."""
    from mcred.cli.text import key_destruction_line

    line = key_destruction_line(done)
    if line is not None:
        console.print(line, highlight=False)


def key_destroy(
    ref: str = typer.Argument(..., metavar="REF", help="The signer: an IACA's number (2), or any mdoc signer's "
                              "label (mdoc-iaca-2, mdoc-ds-3, mdoc-status-1, mdoc-vical-signer-1, mdoc-vical-ca-1) "
                              "or certificate serial (hex), as the listings show them."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Destroy a signer's private key in the key store, for good, once no duty needs it.

    A revoked signer's key (any reason: a key-compromise procedure ends here), or one whose
    duties have all ended: a retired document, status-list or VICAL signer, an older IACA
    once every document signer it certified has expired, an older VICAL CA once every VICAL
    signer it certified has. Refused (exit 2, nothing changed) for a signer signing now (the
    current IACA, document signer, status-list signer, VICAL signer or VICAL CA) or staged,
    and for an older IACA or VICAL CA still certifying signers that have not expired. Its
    certificate stays published (/trust/iaca-N.pem, the listings, the CRLs' chains); the
    time is recorded and audited (mdoc.key.destroy). Again: already destroyed, exit 0."""
    from issuer.keystore import KeyStoreError
    from issuer.mdoc.errors import KeyDestructionRefused, UnknownSigner

    svc = _mdoc_service()[1]
    try:
        done = svc.destroy_key(ref, actor=cli_actor())
    except (UnknownSigner, KeyDestructionRefused) as exc:
        raise _fail(str(exc), 2, as_json) from None
    except KeyStoreError as exc:
        raise _fail(f"the key store could not destroy it: {exc}", 2, as_json) from None
    if as_json:
        print(json.dumps(done.to_json(), ensure_ascii=False))
        return
    _said_destroyed(done)


def _hex_bytes(value):  # noqa: ANN001, ANN202
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {k: _hex_bytes(v) for k, v in value.items()}
    return value


def _group(app: typer.Typer, name: str, help_text: str) -> typer.Typer:
    for info in app.registered_groups:
        if info.name == name:
            return info.typer_instance
    group = typer.Typer(help=help_text, no_args_is_help=True)
    app.add_typer(group, name=name)
    return group


def register(app: typer.Typer) -> None:
    from mcred.cli.export_cmds import export_app

    mdoc = _group(app, "mdoc", "ISO 18013-5 mdoc tools.")
    mdoc.command("issue")(issue)
    mdoc.command("respond")(respond)
    ds = _group(mdoc, "ds", "Document signers of the mdoc issuer: list, rollover, revoke.")
    ds.command("list")(ds_list)
    ds.command("rollover")(ds_rollover)
    ds.command("revoke")(ds_revoke)
    mdoc.command("reissue")(reissue)
    iaca_group = _group(mdoc, "iaca", "The mdoc IACA (trust anchor) generations: list, stage, rollover, revoke.")
    iaca_group.command("list")(iaca_list)
    iaca_group.command("rollover")(iaca_rollover)
    iaca_group.command("stage")(iaca_stage)
    iaca_group.command("revoke")(iaca_revoke)
    vical_signer = _group(mdoc, "vical-signer", "VICAL signers of the mdoc issuer (ISO/IEC 18013-5 Annex "
                          "C.1.7): list, revoke.")
    vical_signer.command("list")(vical_signer_list)
    vical_signer.command("revoke")(vical_signer_revoke)
    vical_ca = _group(mdoc, "vical-ca", "The VICAL CA (the anchor readers trust for the VICAL, ISO/IEC 18013-5 "
                      "Annex C.1.7) generations: list, stage, rollover.")
    vical_ca.command("list")(vical_ca_list)
    vical_ca.command("stage")(vical_ca_stage)
    vical_ca.command("rollover")(vical_ca_rollover)
    key = _group(mdoc, "key", "The private keys of the mdoc issuer's signers: destroy one no duty needs.")
    key.command("destroy")(key_destroy)
    export_app.command("iaca")(export_iaca)
    export_app.command("vical")(export_vical)
    status_lists = _group(app, "status-list", "Token Status Lists.")
    status_lists.command("show")(status_list_show)
    signer = _group(status_lists, "signer", "Status-list signers of the mdoc issuer: list, revoke.")
    signer.command("list")(status_signer_list)
    signer.command("revoke")(status_signer_revoke)
    cred = _group(app, "credential", "Issued credentials in the registry.")
    cred.command("list")(credential_list)
    cred.command("show")(credential_show)
