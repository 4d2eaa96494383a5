"""The JPKI relying party: verify a signature made with a phone's JPKI certificate.

Steps, each a named check in the result (``{"valid", "checks": [{"name", "passed",
"reason", "code"}], "documents": [...]}``, the shape of the mdoc verifier; ``code`` from the
closed vocabulary :data:`protocols.jpki.relying_party.CHECK_CODES`; the ``revocation`` check
and the ``signature_timestamp`` check (its TSA unit's revocation; a PDF's ``document_timestamp``
alike) also with ``revoked_at`` and ``revocation_reason``, null unless a verified answer says
revoked):

1. ``signature``: CMS detached SignedData (RFC 5652 5) or a raw signature with the signer
   certificate given separately (PKCS#1 v1.5 / SHA-256 for RSA-2048, ECDSA / SHA-384 DER for
   P-384, over the content);
   ``signature_timestamp``, when the CMS carries a signature time-stamp (RFC 3161 Appendix
   A; CAdES-T): the token verified under the trusted time-stamping roots; the checks below
   are then judged at its genTime, and a revocation after it does not fail the signature;
2. ``chain``: issued by a trusted root picked by key identifier (AKI = SKI), RFC 5280 6;
3. ``policy`` / ``key_usage``: a user-authentication certificate is refused where a signing
   certificate is required and vice versa (policy OID, keyUsage);
4. ``validity``;
5. ``revocation``: OCSP over HTTP (RFC 6960: nonce, the delegated responder certificate must
   be issued by the same root and carry id-kp-OCSPSigning, CertID matched, response current)
   or the partition's CRL (given, or fetched from the certificate's distribution point;
   scope checked through issuingDistributionPoint), or ``auto``: OCSP first, and the CRL
   only when the responder gave no verified answer about the certificate (unreachable,
   HTTP error, unparseable, unsuccessful, badly signed, stale, nonce or serial mismatch).
   A verified ``good``, ``revoked`` or ``unknown`` is final: ``auto`` never trades a
   responder's "revoked" or "unknown" for a CRL without the entry.

Fetched CRLs can be kept in a :class:`CrlCache` (the service keeps one): parsed once, reused
until their nextUpdate and at most ``max_age`` after the fetch; the checks (signature,
currency, scope, entry) still run on every verification.

The pure checks are :mod:`protocols.jpki.relying_party`; this module adds the transport.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from asn1crypto import ocsp as asn1ocsp
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID

from protocols import certs, tsp
from protocols import crl as ca_crl
from protocols.crl import CrlError, reason_flag
from protocols.jpki.cms import verify_detached_signature
from protocols.jpki.errors import JpkiError
from protocols.jpki.parse import classify, load_certificate, read_basic_four
from protocols.jpki.profile import Purpose
from protocols.jpki.relying_party import (
    Check,
    check_chain,
    check_crl,
    check_key_usage,
    check_policy,
    check_validity,
    crl_invalidity,
    crl_refusal,
    crl_scope,
    revoked_check,
    revoked_text,
    unavailable,
    utc_text,
)
from reader.crl_cache import CrlCache
from reader.fetch import JPKI_CRL_MAX_BYTES, OCSP_MAX_BYTES, FetchError, fetch
from reader.rp_auth import Challenge, ChallengeRefused, ChallengeStore, MemoryChallengeStore

if TYPE_CHECKING:  # the web client is made where a fetch needs it (reader.fetch)
    import httpx

#: How far an OCSP answer's thisUpdate may lie after the time judged (a responder's clock
#: ahead), and, for an answer without nextUpdate, before it (:func:`judge_ocsp`).
SKEW = dt.timedelta(minutes=5)
TIMEOUT = 10.0
REVOCATION_MODES = ("ocsp", "crl", "auto", "embedded", "none")


@dataclass(frozen=True)
class EmbeddedRevocation:
    """Validation data that came with a signature (a PDF's document security store, PAdES
    B-LT): DER OCSP responses and CRLs, judged at the signature's time-stamp."""

    ocsp_responses: tuple[bytes, ...] = ()
    crls: tuple[bytes, ...] = ()


def load_roots(data: bytes) -> list[x509.Certificate]:
    """Every certificate of a PEM bundle, or one DER certificate."""
    return certs.load_any(data)


def _verify_raw(cert: x509.Certificate, signature: bytes, content: bytes) -> Check:
    key = cert.public_key()
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, content, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, content, ec.ECDSA(hashes.SHA384()))
        else:
            return Check("signature", False, f"unsupported key {type(key).__name__}", code="bad_signature")
    except (InvalidSignature, ValueError):
        return Check("signature", False, "raw signature does not verify over the content", code="bad_signature")
    return Check("signature", True, "raw signature verifies")


#: The extensions of a delegated OCSP responder's certificate read here or harmless to
#: ignore: one marking any other critical is not relied on (RFC 5280 4.2).
RESPONDER_EXTENSIONS = frozenset({
    ExtensionOID.AUTHORITY_KEY_IDENTIFIER, ExtensionOID.SUBJECT_KEY_IDENTIFIER, ExtensionOID.BASIC_CONSTRAINTS,
    ExtensionOID.KEY_USAGE, ExtensionOID.EXTENDED_KEY_USAGE, ExtensionOID.OCSP_NO_CHECK,
    ExtensionOID.AUTHORITY_INFORMATION_ACCESS, ExtensionOID.CRL_DISTRIBUTION_POINTS})


def _check_responder(resp: ocsp.OCSPResponse, root: x509.Certificate, at: dt.datetime) -> str | None:
    """Why the response's signer is not acceptable at ``at`` (None: fine). RFC 6960 4.2.2.2:
    the root itself (its certificate sent along in ``certs`` or not), or a delegated
    responder it issued with id-kp-OCSPSigning, valid at ``at`` (RFC 5280 6.1.3)."""
    # the responderID is only a hint: every certificate sent along, then the root, is tried,
    # and the signature decides (a root-signed answer may carry other certificates)
    candidates = [*resp.certificates, root]
    why = "OCSP response is not signed by the root or a delegated responder of that root"
    for signer in candidates:
        if signer != root:
            try:
                signer.verify_directly_issued_by(root)
                eku = signer.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
            except (InvalidSignature, ValueError, TypeError, x509.ExtensionNotFound):
                continue
            if ExtendedKeyUsageOID.OCSP_SIGNING not in eku:
                continue
            refused = certs.critical_refusal(signer, RESPONDER_EXTENSIONS)
            if refused:
                why = f"OCSP response is signed by a delegated responder whose certificate cannot be relied on: {refused}"
                continue
            if not signer.not_valid_before_utc - SKEW <= at <= signer.not_valid_after_utc:
                why = (f"OCSP response is signed by a delegated responder whose certificate is not valid "
                       f"at {at.isoformat()} ({signer.not_valid_before_utc.isoformat()} to "
                       f"{signer.not_valid_after_utc.isoformat()})")
                continue
        key = signer.public_key()
        try:
            if isinstance(key, rsa.RSAPublicKey):
                key.verify(resp.signature, resp.tbs_response_bytes, padding.PKCS1v15(),
                           resp.signature_hash_algorithm)
            else:
                key.verify(resp.signature, resp.tbs_response_bytes,
                           ec.ECDSA(resp.signature_hash_algorithm))
        except (InvalidSignature, ValueError, TypeError):
            continue
        return None
    return why


def check_ocsp(cert: x509.Certificate, root: x509.Certificate, at: dt.datetime, *,
               url: str | None = None, client: httpx.Client | None = None) -> Check:
    """Ask the OCSP responder (POST, SHA-256 CertID, random nonce) and judge its answer."""
    return _ask_ocsp(cert, root, at, url=url, client=client)[0]


@dataclass(frozen=True)
class OcspAnswer:
    """A verified OCSP answer about one certificate: from an acceptable responder, current,
    nonce and serial matched."""

    url: str
    status: str  # good | revoked | unknown
    this_update: dt.datetime
    reason: str | None = None  # the CRLReason name, when revoked
    revoked_at: dt.datetime | None = None
    #: the response as the responder sent it (DER): what a signer keeps with its signature
    der: bytes = b""
    #: the SingleResponse's invalidityDate singleExtension (RFC 6960 4.4, RFC 5280 5.3.2), when revoked
    invalid_since: dt.datetime | None = None

    def check(self) -> Check:
        if self.status == "good":
            return Check("revocation", True, f"OCSP good ({self.url})", code="good")
        if self.status == "revoked":
            return revoked_check(self.reason, self.revoked_at,
                                 f"{revoked_text(self.reason, self.revoked_at, self.invalid_since)} (OCSP)",
                                 self.invalid_since)
        return Check("revocation", False, "OCSP status unknown", code="unknown")


def ocsp_answer(cert: x509.Certificate, root: x509.Certificate, at: dt.datetime, *,
                url: str | None = None, client: httpx.Client | None = None) -> OcspAnswer | Check:
    """Ask the OCSP responder (POST, SHA-256 CertID, random nonce): its verified answer about
    ``cert``, or the failed ``revocation`` check saying why there is none (unreachable, HTTP
    error, unparseable, unsuccessful, badly signed, nonce or serial mismatch, stale)."""
    url = url or certs.ocsp_url(cert)
    if not url:
        return unavailable("certificate names no OCSP responder")
    nonce = os.urandom(16)
    req = (ocsp.OCSPRequestBuilder().add_certificate(cert, root, hashes.SHA256())
           .add_extension(x509.OCSPNonce(nonce), critical=False).build())
    try:
        answer = fetch(client, "POST", url, max_bytes=OCSP_MAX_BYTES, timeout=TIMEOUT,
                       content=req.public_bytes(serialization.Encoding.DER),
                       headers={"Content-Type": "application/ocsp-request"})
    except FetchError as exc:
        return unavailable(f"OCSP responder {url} unreachable: {exc}")
    if answer.status != 200:
        return unavailable(f"OCSP responder answered HTTP {answer.status}")
    try:
        resp = ocsp.load_der_ocsp_response(answer.body)
    except ValueError as exc:
        return unavailable(f"OCSP response does not parse: {exc}")
    got = judge_ocsp(resp, cert, root, at, where=url, nonce=nonce)
    return got if isinstance(got, Check) else dataclasses.replace(got, der=answer.body)


def judge_ocsp(resp: ocsp.OCSPResponse, cert: x509.Certificate, root: x509.Certificate, at: dt.datetime,
               *, where: str, nonce: bytes | None = None) -> OcspAnswer | Check:
    """``resp``'s verified answer about ``cert`` at ``at``, or the failed ``revocation``
    check saying why there is none: successful, signed by ``root`` or its delegated
    responder, carrying ``nonce`` when one was sent (an answer kept with a signature was
    asked with none), about ``cert``, current (thisUpdate at most :data:`SKEW` after ``at``,
    nextUpdate not before it; without a nextUpdate, thisUpdate at most :data:`SKEW` before
    ``at``). ``where``: the responder's URL, or where the answer was kept.

    An answer without nextUpdate says newer information is available at any time (RFC 6960
    4.2.2.1): it is only as fresh as its thisUpdate, and is taken as if its nextUpdate were
    its thisUpdate, within the clock allowance :data:`SKEW` (as thisUpdate is the other way)
    rather than for ever. A nonce does not change that: it proves the answer was signed for
    this request, not that the status it gives is newer than its thisUpdate. Kept with a
    signature, such an answer speaks for a time-stamp within :data:`SKEW` of it only."""
    try:
        if resp.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
            return unavailable(f"OCSP responder said {resp.response_status.name}")
        why = _check_responder(resp, root, at)
        if why:
            return unavailable(why)
        if nonce is not None:
            try:
                got = resp.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
            except x509.ExtensionNotFound:
                got = None
            if got is None:
                return unavailable("OCSP response carries no nonce: it may be a replayed "
                                   "answer (the request sent one; RFC 8954)")
            if got != nonce:
                return unavailable("OCSP nonce does not match the request")
        # a responder may answer several certificates at once (RFC 6960 4.2.1: one
        # SingleResponse each, as `openssl ocsp` does when asked for several): ours is the one
        # whose CertID names this serial under this issuer
        singles = list(resp.responses)
        single = next((r for r in singles if r.serial_number == cert.serial_number
                       and _same_issuer(r, cert, root)), None)
        if single is None:
            if any(r.serial_number == cert.serial_number for r in singles):
                return unavailable("OCSP response is about another certificate: its CertID "
                                   "names another issuer (the serial alone does not say which certificate)")
            return unavailable("OCSP response is about another certificate")
        if single.this_update_utc - SKEW > at:
            return unavailable(f"OCSP response is not current: thisUpdate "
                               f"{single.this_update_utc.isoformat()} is more than {SKEW} after {at.isoformat()}")
        if single.next_update_utc and single.next_update_utc < at:
            return unavailable(f"OCSP response is not current: nextUpdate "
                               f"{single.next_update_utc.isoformat()} passed ({at.isoformat()})")
        if single.next_update_utc is None and single.this_update_utc + SKEW < at:
            return unavailable(f"OCSP response is not current: it has no nextUpdate (newer information is always "
                               f"available, RFC 6960 4.2.2.1), and its thisUpdate "
                               f"{single.this_update_utc.isoformat()} is more than {SKEW} before {at.isoformat()}")
        status = single.certificate_status
    except (ValueError, TypeError) as exc:
        return unavailable(f"OCSP response unreadable: {exc}")
    if status is ocsp.OCSPCertStatus.GOOD:
        return OcspAnswer(where, "good", single.this_update_utc)
    if status is ocsp.OCSPCertStatus.REVOKED:
        reason = single.revocation_reason.value if single.revocation_reason else "unspecified"
        return OcspAnswer(where, "revoked", single.this_update_utc, reason, single.revocation_time_utc,
                          invalid_since=_single_invalidity(resp, singles.index(single)))
    return OcspAnswer(where, "unknown", single.this_update_utc)


def _single_invalidity(resp: ocsp.OCSPResponse, index: int) -> dt.datetime | None:
    """The invalidityDate singleExtension (RFC 6960 4.4: RFC 5280 5.3.2's CRL entry extension)
    of the response's ``index``-th SingleResponse, in UTC, or None when it has none or it
    cannot be read (``cryptography`` reads no singleExtensions of a response with several)."""
    try:
        basic = asn1ocsp.OCSPResponse.load(resp.public_bytes(serialization.Encoding.DER))
        single = basic["response_bytes"]["response"].parsed["tbs_response_data"]["responses"][index]
        for ext in single["single_extensions"] or []:
            if ext["extn_id"].native == "invalidity_date":
                at = ext["extn_value"].parsed.native
                return at.astimezone(dt.UTC) if isinstance(at, dt.datetime) and at.tzinfo else None
    except (ValueError, TypeError, KeyError, IndexError):
        return None
    return None


def _same_issuer(single: ocsp.OCSPSingleResponse, cert: x509.Certificate, root: x509.Certificate) -> bool:
    """Whether a SingleResponse's CertID names ``root`` (issuerNameHash and issuerKeyHash, in
    the CertID's own hash; RFC 6960 4.1.1, 3.2 item 1): a serial is unique under one issuer only."""
    try:
        mine = ocsp.OCSPRequestBuilder().add_certificate(cert, root, single.hash_algorithm).build()
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return (mine.issuer_name_hash, mine.issuer_key_hash) == (single.issuer_name_hash, single.issuer_key_hash)


def _ask_ocsp(cert: x509.Certificate, root: x509.Certificate, at: dt.datetime, *,
              url: str | None = None, client: httpx.Client | None = None) -> tuple[Check, bool]:
    """:func:`check_ocsp`'s check, and whether it rests on a verified answer about ``cert``
    (good, revoked or unknown from an acceptable responder, current, nonce and serial
    matched); ``False`` means the responder gave no such answer."""
    got = ocsp_answer(cert, root, at, url=url, client=client)
    return (got, False) if isinstance(got, Check) else (got.check(), True)


def _parse_crl(data: bytes) -> x509.CertificateRevocationList | Check:
    try:
        return ca_crl.load(data)  # PEM or DER, what cryptography reads late read now
    except CrlError as exc:
        return unavailable(f"CRL does not parse: {exc}")


def fetch_crl(url: str, client: httpx.Client | None = None) -> x509.CertificateRevocationList | Check:
    """The CRL at ``url`` (GET, at most :data:`reader.fetch.JPKI_CRL_MAX_BYTES`, PEM or DER),
    or the failed ``revocation`` check saying why not (unreachable, HTTP error, unparseable)."""
    try:
        answer = fetch(client, "GET", url, max_bytes=JPKI_CRL_MAX_BYTES, timeout=TIMEOUT,
                       headers={"Accept": "application/pkix-crl"})
    except FetchError as exc:
        return unavailable(f"CRL at {url} unreachable: {exc}")
    if answer.status != 200:
        return unavailable(f"CRL at {url}: HTTP {answer.status}")
    return _parse_crl(answer.body)


def check_revocation_crl(cert: x509.Certificate, root: x509.Certificate, at: dt.datetime, *,
                         crl: bytes | None = None, client: httpx.Client | None = None,
                         cache: CrlCache | None = None) -> Check:
    """Revocation from the CRL given as ``crl``, or fetched from the certificate's CRL
    distribution point (through ``cache`` when given)."""
    if crl is not None:
        parsed = _parse_crl(crl)
        return parsed if isinstance(parsed, Check) else check_crl(cert, root, parsed, at)
    url = certs.crl_url(cert)
    if not url:
        return unavailable("certificate names no CRL distribution point")

    got = (cache.get(url, at, lambda where: fetch_crl(where, client)) if cache is not None
           else fetch_crl(url, client))
    if isinstance(got, Check):
        return got
    check = check_crl(cert, root, got, at)
    return dataclasses.replace(check, reason=f"{check.reason} (CRL {url}, thisUpdate {got.last_update_utc.isoformat()})")


def _auto(cert: x509.Certificate, root: x509.Certificate, at: dt.datetime, *,
          ocsp_url: str | None, crl: bytes | None, client: httpx.Client | None,
          cache: CrlCache | None) -> Check:
    """OCSP; the CRL only when the responder gave no verified answer about ``cert``."""
    check, answered = _ask_ocsp(cert, root, at, url=ocsp_url, client=client)
    if answered:
        return check
    fallback = check_revocation_crl(cert, root, at, crl=crl, client=client, cache=cache)
    return dataclasses.replace(fallback, reason=f"OCSP gave no answer ({check.reason}); CRL fallback: {fallback.reason}")


def verify(content: bytes | Callable[[str], bytes], signature: bytes, *, roots: Sequence[x509.Certificate],
           slot: str = "sign", certificate: bytes | None = None, revocation: str = "ocsp",
           ocsp_url: str | None = None, crl: bytes | None = None,
           at: dt.datetime | None = None, client: httpx.Client | None = None,
           crl_cache: CrlCache | None = None,
           tsa_roots: Sequence[x509.Certificate] = (),
           embedded: EmbeddedRevocation | None = None) -> dict[str, Any]:
    """Verify ``signature`` over ``content``; never raises on bad input.

    A CMS signature with a signature time-stamp (CAdES-T / PAdES B-T) gets the check
    ``signature_timestamp`` (the token verified under one of ``tsa_roots``, its imprint the
    hash of the signature value); once it passes, chain and validity are judged at the
    token's genTime, and a certificate revoked after it (by the answer asked now) passes
    ``revocation``: the signature was made while the certificate was valid (signatures made
    before an address change or a handover stay valid; specs/revocation.md 5.2).

    ``certificate`` given: ``signature`` is raw; otherwise it is CMS, and ``content`` may be
    what gives the signed bytes' digest by hash name instead of the bytes
    (:func:`protocols.jpki.cms.verify_detached_signature`). ``revocation``:
    ``ocsp`` | ``crl`` | ``auto`` (OCSP, then the CRL when the responder gave no verified
    answer) | ``embedded`` (the validation data that came with the signature, ``embedded``,
    or the CMS's own ``crls`` field, judged at the signature's time-stamp: no network) |
    ``none``; anything else is a failed ``revocation`` check."""
    at = at or dt.datetime.now(dt.UTC)
    required = Purpose.SIGN if slot == "sign" else Purpose.AUTH
    checks: list[Check] = []
    try:
        if certificate is not None:
            if callable(content):
                raise JpkiError("a raw signature is checked over the content itself, not a digest of it")
            cert = load_certificate(certificate)
            checks.append(_verify_raw(cert, signature, content))
        else:
            cms = verify_detached_signature(signature, content)
            cert = cms.signer_certificate
            checks.append(Check("signature", True, "CMS signature verifies"))
    except JpkiError as exc:
        checks.append(Check("signature", False, str(exc), code="bad_signature"))
        return _result(checks, None)
    if revocation == "embedded" and embedded is None and certificate is None:
        # a detached signature's own validation data (its SignedData's crls field)
        embedded = EmbeddedRevocation(cms.ocsp_responses, cms.crls)
    stamp = None
    if certificate is None and cms.timestamp_tokens:
        stamped, stamp = signature_timestamp([(token, cms.signature_value) for token in cms.timestamp_tokens],
                                             tsa_roots, revocation=revocation, at=at, client=client,
                                             cache=crl_cache, embedded=embedded)
        checks.append(stamped)
    checks += judge_certificate(cert, roots=roots, required=required, revocation=revocation, at=at,
                                stamp=stamp, ocsp_url=ocsp_url, crl=crl, client=client, crl_cache=crl_cache,
                                embedded=embedded)
    if certificate is None and stamp is None and cms.signing_time is not None:
        checks[-1] = _claimed_before(checks[-1], cms.signing_time)
    return _result(checks, cert)


def _claimed_before(check: Check, signing_time: dt.datetime) -> Check:
    """A failed ``revocation`` on a verified "revoked" of a signature without a time-stamp
    whose signingTime claims a time before the revocation: said, since a relying party would
    ask; the check still fails (the signer's own clock proves nothing; RFC 5652 11.3)."""
    if check.name != "revocation" or check.passed or check.revoked_at is None or signing_time >= check.invalid_from:
        return check
    return dataclasses.replace(check, reason=f"{check.reason}; the signature claims signingTime "
                               f"{signing_time.isoformat()}, before that, but only a signature time-stamp proves "
                               "when it was made (mcred jpki sign --timestamp)")


def check_embedded(cert: x509.Certificate, root: x509.Certificate, stamp: tsp.TimeStamp | None,
                   embedded: EmbeddedRevocation) -> Check:
    """Revocation from the validation data that came with the signature, judged at its
    time-stamp: an OCSP answer about ``cert`` from the root or its delegated responder, or a
    CRL of the root, that was current at the time-stamp (thisUpdate at most :data:`SKEW`
    after it, nextUpdate not before it; without nextUpdate, thisUpdate within :data:`SKEW`
    of it): what a relying party asking then would have been told. Of several, the newest
    decides (OCSP: the latest thisUpdate; CRLs: :func:`protocols.crl.newest_first`), so that
    an older answer or list without the revocation does not hide a newer one with it. Without
    a verified time-stamp the data speaks for no known signing time."""
    if stamp is None:
        return unavailable("embedded validation data needs a signature time-stamp: "
                           "without one, nothing says when the signature was made")
    at = stamp.gen_time
    seen = []
    answers = []
    for der in embedded.ocsp_responses:
        try:
            resp = ocsp.load_der_ocsp_response(der)
            if resp.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL or all(
                    r.serial_number != cert.serial_number for r in resp.responses):
                continue  # another certificate's answer (a chain's, a time-stamp's)
            produced = resp.produced_at_utc
        except (ValueError, TypeError):
            continue
        got = judge_ocsp(resp, cert, root, at, where="embedded")
        if isinstance(got, Check):
            seen.append(f"{got.reason} (an answer produced {produced.isoformat()})")
        else:
            answers.append(got)
    if answers:
        # the newest answer current at the time-stamp: an older "good" kept alongside does not
        # hide a later "revoked"
        got = max(answers, key=lambda a: a.this_update)
        if got.status == "good":
            return Check("revocation", True, f"OCSP good at {got.this_update.isoformat()} (embedded), current at "
                         f"the signature's time-stamp {at.isoformat()}", code="good")
        if got.status == "revoked":
            return revoked_after(revoked_check(got.reason, got.revoked_at,
                                               f"{revoked_text(got.reason, got.revoked_at, got.invalid_since)} "
                                               "(OCSP, embedded)", got.invalid_since), stamp)
        return Check("revocation", False, "OCSP status unknown (embedded)", code="unknown")
    usable = []
    for der in embedded.crls:
        parsed = _parse_crl(der)
        if isinstance(parsed, Check) or parsed.issuer != root.subject:
            continue
        refused = crl_refusal(parsed, root, at) or crl_scope(cert, parsed)
        if refused is not None:
            seen.append(refused.reason)
        else:
            usable.append(parsed)
    # the newest CRL that tells first (ca_crl.newest_first): an older one without the entry
    # does not hide a newer one with it; an older complete one still speaks when a newer one
    # cannot say "good" (no nextUpdate, onlySomeReasons) and does not list the certificate
    for parsed in ca_crl.newest_first(usable):
        check = check_crl(cert, root, parsed, at)
        if check.passed or check.revoked_at is not None:
            return revoked_after(dataclasses.replace(check, reason=f"{check.reason} (CRL of "
                                                     f"{parsed.last_update_utc.isoformat()}, embedded)"), stamp)
        seen.append(check.reason)
    return unavailable("no embedded OCSP answer or CRL about the certificate was current at "
                       f"the time-stamp {at.isoformat()}" + (f" ({'; '.join(seen)})" if seen else ""))


def tsa_unit_revoked(stamp: tsp.TimeStamp, at: dt.datetime, *, client: httpx.Client | None = None,
                     cache: CrlCache | None = None, embedded: EmbeddedRevocation | None = None) -> str | None:
    """Why the TSA unit that made ``stamp`` cannot be relied on for it, or None: the unit
    names a CRL distribution point, and its root's CRL there (fetched, or with ``embedded``
    the one the PDF carries, current at the time-stamp) lists it revoked for keyCompromise
    (none of its time-stamps is relied on) or, for another reason, at or before the
    time-stamp, or invalid since then (the entry's invalidityDate: :func:`_unit_revoked`); or
    the CRL cannot be had (fail closed). A unit that names no CRL is not checked."""
    got = tsa_unit_refusal(stamp, at, client=client, cache=cache, embedded=embedded)
    return None if got is None else got.reason


def tsa_unit_refusal(stamp: tsp.TimeStamp, at: dt.datetime, *, client: httpx.Client | None = None,
                     cache: CrlCache | None = None, embedded: EmbeddedRevocation | None = None,
                     name: str = "signature_timestamp") -> Check | None:
    """:func:`tsa_unit_revoked`'s reason as the failed check ``name`` (``signature_timestamp``,
    or a PDF's ``document_timestamp``): code ``unavailable``, or ``revoked`` with the CRL
    entry's revocationDate, reason and invalidityDate (``invalid_since``, when it has one)."""
    def unchecked(why: str) -> Check:
        return Check(name, False, f"the TSA unit's revocation cannot be checked: {why}", code="unavailable")

    unit = stamp.tsa_certificate
    url = certs.crl_url(unit)
    if not url:
        return None

    def told(crl: x509.CertificateRevocationList) -> x509.RevokedCertificate | str | None:
        """The unit's entry on ``crl`` (one not refused, of its scope), None when the CRL
        says it is not listed, or why it cannot say (protocols.crl.incomplete)."""
        entry = crl.get_revoked_certificate_by_serial_number(unit.serial_number)
        return entry if entry is not None else ca_crl.incomplete(crl)

    if embedded is not None:
        parsed = [c for c in map(_parse_crl, embedded.crls) if not isinstance(c, Check)]
        usable = [c for c in parsed if not ca_crl.refusal(c, stamp.root, stamp.gen_time) and not ca_crl.scope(unit, c)]
        # the newest CRL that tells (ca_crl.newest_first): an older one without the unit's
        # entry does not hide a newer one with it
        whys = []
        for crl in ca_crl.newest_first(usable):
            entry = told(crl)
            if not isinstance(entry, str):
                break
            whys.append(entry)
        else:
            return unchecked("no CRL of its root current at the time-stamp is embedded"
                             + (f" ({'; '.join(whys)})" if whys else ""))
    else:
        got = cache.get(url, at, lambda where: fetch_crl(where, client)) if cache is not None else fetch_crl(url, client)
        if isinstance(got, Check):
            return unchecked(got.reason)
        why = ca_crl.refusal(got, stamp.root, at, what="the time-stamping root") or ca_crl.scope(unit, got)
        entry = why or told(got)
        if isinstance(entry, str):
            return unchecked(f"its root's CRL at {url}: {entry}")
    if entry is None:
        return None
    return _unit_revoked(stamp, entry, name)


def _unit_revoked(stamp: tsp.TimeStamp, entry: x509.RevokedCertificate, name: str) -> Check | None:
    """What the root's CRL entry of the TSA unit that made ``stamp`` says of it: refused
    (``revoked``) or None (it stands).

    * **keyCompromise**: none of the unit's time-stamps is relied on (RFC 3161 4, 2.), with or
      without an invalidity date: a time-stamp's genTime is what the unit's key signed, and
      whoever held the key from the invalidity date on could sign any genTime, an earlier one
      too. (A proof that the token existed before that date, a later time-stamp by another
      TSA over it, would let it stand; none is looked for here.)
    * **Any other reason** (superseded, cessationOfOperation, ...): the unit's own clock and
      key are trusted up to when it became invalid, the earlier of its revocation and its
      invalidityDate (RFC 5280 5.3.2: a unit whose clock was found out of its accuracy since
      then, say); a time-stamp made at or after that (genTime + accuracy) is refused, one
      made before stands."""
    flag = reason_flag(entry)
    reason = flag.value if flag else "unspecified"
    revoked_at, since = entry.revocation_date_utc, crl_invalidity(entry)
    cutoff = revoked_at if since is None else min(revoked_at, since)
    said = f"revoked ({reason}) at {utc_text(revoked_at)}"
    if flag is x509.ReasonFlags.key_compromise:
        if since is None:
            why = f"{said}: none of its time-stamps is relied on"
        else:
            why = (f"{said}, its key compromised since {utc_text(since)} (the CRL entry's invalidityDate): none of "
                   f"its time-stamps is relied on, this one's genTime {utc_text(stamp.gen_time)} included: a "
                   "genTime is what that key signed, and whoever held it could sign an earlier one")
    elif cutoff > stamp.latest:
        return None
    elif since is None or since >= revoked_at:
        why = f"{said}, before this time-stamp"
    else:
        why = (f"{said}, invalid since {utc_text(since)} (the CRL entry's invalidityDate): this time-stamp's "
               f"genTime {utc_text(stamp.gen_time)} is not before it, so the unit was not to be relied on when it "
               "made it")
    return Check(name, False, f"the TSA unit was {why}", revoked_at, code="revoked", revocation_reason=reason,
                 invalid_since=since)


def signature_timestamp(stamps: Sequence[tuple[bytes, bytes]], tsa_roots: Sequence[x509.Certificate], *,
                        revocation: str = "none", at: dt.datetime | None = None,
                        client: httpx.Client | None = None, cache: CrlCache | None = None,
                        embedded: EmbeddedRevocation | None = None) -> tuple[Check, tsp.TimeStamp | None]:
    """The ``signature_timestamp`` check: the first of ``stamps`` (each a token and the bytes
    it stamps: a CMS signature value, a canonical ds:SignatureValue) that verifies under
    ``tsa_roots`` (RFC 3161 Appendix A) and whose TSA unit is not revoked before it
    (:func:`tsa_unit_revoked`; not asked with ``revocation`` none, from ``embedded`` with
    embedded), and it."""
    if not tsa_roots:
        return Check("signature_timestamp", False, "the signature carries a time-stamp, but no "
                     "time-stamping root is trusted here"), None
    at = at or dt.datetime.now(dt.UTC)
    refused: list[Check] = []
    for token, data in stamps:
        try:
            stamp = tsp.verify_token(token, data=data, roots=tsa_roots)
        except tsp.TspError as exc:
            refused.append(Check("signature_timestamp", False, str(exc)))
            continue
        why = None if revocation == "none" else tsa_unit_refusal(
            stamp, at, client=client, cache=cache, embedded=embedded if revocation == "embedded" else None)
        if why:
            refused.append(why)
            continue
        return Check("signature_timestamp", True, f"signed before {stamp.gen_time.isoformat()} "
                     f"(±{stamp.accuracy.total_seconds() if stamp.accuracy else 0:g} s), time-stamp "
                     f"{stamp.serial:x} by {stamp.tsa_certificate.subject.rfc4514_string()}"), stamp
    codes = {c.code for c in refused}
    # asking again may make a stamp pass when one TSA unit's revocation could not be had
    code = "unavailable" if "unavailable" in codes else codes.pop() if len(codes) == 1 else "failed"
    failed = Check("signature_timestamp", False, "; ".join(c.reason for c in refused), code=code)
    if code == "revoked":  # every stamp's unit was: when and why, the first one's (each in the reason)
        failed = dataclasses.replace(failed, revoked_at=refused[0].revoked_at,
                                     revocation_reason=refused[0].revocation_reason,
                                     invalid_since=refused[0].invalid_since)
    return failed, None


def revoked_after(check: Check, stamp: tsp.TimeStamp) -> Check:
    """A failed ``revocation`` check on a verified "revoked" at a time after the signature's
    time-stamp (genTime + accuracy) passes: the signature was made while the certificate
    was valid. The time is the earlier of the revocation's and the invalidity date the answer
    gives (:attr:`Check.invalid_from`): a certificate revoked after the stamp but invalid
    since before it (a lost phone's, on hold from then) was not valid when it signed, and the
    check stays failed, saying so. Any other check is returned as it is."""
    if check.passed or check.revoked_at is None:
        return check
    if check.invalid_from <= stamp.latest:
        if check.revoked_at <= stamp.latest:
            return check
        return dataclasses.replace(check, reason=f"{check.reason}: the signature's time-stamp "
                                   f"{stamp.gen_time.isoformat()} is after the certificate became invalid, so it "
                                   "was made while the certificate was not valid")
    return Check("revocation", True, f"{check.reason}: after the signature's time-stamp "
                 f"{stamp.gen_time.isoformat()}, so it was made while the certificate was valid",
                 check.revoked_at, code="revoked_after_signing", revocation_reason=check.revocation_reason,
                 invalid_since=check.invalid_since)


def judge_certificate(cert: x509.Certificate, *, roots: Sequence[x509.Certificate], required: Purpose,
                      revocation: str, at: dt.datetime, stamp: tsp.TimeStamp | None = None,
                      ocsp_url: str | None = None, crl: bytes | None = None, client: httpx.Client | None = None,
                      crl_cache: CrlCache | None = None,
                      embedded: EmbeddedRevocation | None = None) -> list[Check]:
    """What a relying party asks of a signer's certificate once the signature verifies: the
    chain to one of ``roots``, the policy and key usage of ``required``, validity and
    revocation (``revocation`` as :func:`verify` takes it), all at ``stamp``'s genTime when
    a time-stamp vouches for the signature (a revocation after it then passes)."""
    when = stamp.gen_time if stamp else at
    chain, root = check_chain(cert, roots, when)
    validity = check_validity(cert, when)
    if stamp:
        validity = dataclasses.replace(validity, reason=f"{validity.reason}, judged at the time-stamp")
    checks = [chain, check_policy(cert, required), check_key_usage(cert, required), validity]
    if revocation not in REVOCATION_MODES:
        checks.append(Check("revocation", False, f"unknown revocation mode {revocation!r}: "
                            f"one of {', '.join(REVOCATION_MODES)}", code="failed"))
    elif revocation != "none":
        if root is None:
            checks.append(Check("revocation", False, "no trusted root to ask about", code="failed"))
        elif revocation == "embedded":
            checks.append(check_embedded(cert, root, stamp, embedded or EmbeddedRevocation()))
        elif revocation == "ocsp":
            checks.append(check_ocsp(cert, root, at, url=ocsp_url, client=client))
        elif revocation == "crl":
            checks.append(check_revocation_crl(cert, root, at, crl=crl, client=client, cache=crl_cache))
        else:
            checks.append(_auto(cert, root, at, ocsp_url=ocsp_url, crl=crl, client=client,
                                cache=crl_cache))
        if stamp is not None and revocation != "embedded":
            checks[-1] = revoked_after(checks[-1], stamp)
    return checks


def _result(checks: list[Check], cert: x509.Certificate | None) -> dict[str, Any]:
    documents = []
    if cert is not None:
        doc: dict[str, Any] = {"subject": cert.subject.rfc4514_string(),
                               "serial": format(cert.serial_number, "x")}
        try:
            doc["purpose"] = classify(cert).value
            if doc["purpose"] == "sign":
                four = read_basic_four(cert)
                doc["basic_four"] = {"name": four.name, "sex": four.sex.value,
                                     "birth_date": four.birth_date.date.isoformat(),
                                     "address": four.address}
        except JpkiError:
            pass
        documents.append(doc)
    return {"valid": all(c.passed for c in checks) and bool(checks),
            "checks": [c.to_dict() for c in checks], "documents": documents}


class RelyingPartyService:
    """The relying party as a service (``POST /rp/jpki/verify`` of :mod:`reader.http`): trusted
    JPKI roots (every generation of both purposes; the chain check picks by AKI, the policy
    check tells signing from user authentication), revocation asked live over HTTP.

    ``roots`` is a sequence or a zero-argument callable (read on each request, so a root
    rollover at the issuer is seen without restarting the reader). CRLs it fetches (``crl``
    and ``auto``) are kept in :attr:`crl_cache`."""

    def __init__(self, roots: Sequence[x509.Certificate] | Callable[[], Sequence[x509.Certificate]],
                 *, client: httpx.Client | None = None,
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
                 crl_cache: CrlCache | None = None,
                 challenges: ChallengeStore | None = None,
                 tsa_roots: Sequence[x509.Certificate] | Callable[[], Sequence[x509.Certificate]] = ()) -> None:
        self._roots = roots
        self._tsa_roots = tsa_roots
        self.client = client
        self.clock = clock
        self.crl_cache = crl_cache if crl_cache is not None else CrlCache()
        #: the user-authentication challenges handed out (:mod:`reader.rp_auth`)
        self.challenges: ChallengeStore = challenges if challenges is not None else MemoryChallengeStore()

    def challenge(self) -> Challenge:
        """A user-authentication challenge for a phone to sign (:mod:`reader.rp_auth`)."""
        return self.challenges.issue(self.clock())

    def authenticate(self, challenge_id: str, signature: bytes, certificate: bytes, *,
                     revocation: str = "ocsp") -> dict[str, Any]:
        """JPKI user authentication: the challenge taken back (once, before it expires), then
        the raw ``signature`` over its nonce verified with the user-authentication
        ``certificate`` (chain, policy, key usage, validity, revocation). The verdict's first
        check is ``challenge``; a refused challenge ends the verdict there."""
        try:
            nonce = self.challenges.take(challenge_id, self.clock())
        except ChallengeRefused as exc:
            return _result([Check("challenge", False, str(exc))], None)
        verdict = self.verify(nonce, signature, slot="auth", certificate=certificate, revocation=revocation)
        checks = [Check("challenge", True, "handed out here, answered once, in time").to_dict(),
                  *verdict["checks"]]
        return {**verdict, "checks": checks}

    def roots(self) -> list[x509.Certificate]:
        return list(self._roots() if callable(self._roots) else self._roots)

    def tsa_roots(self) -> list[x509.Certificate]:
        """The time-stamping roots a signature time-stamp must chain to."""
        return list(self._tsa_roots() if callable(self._tsa_roots) else self._tsa_roots)

    def verify(self, content: bytes, signature: bytes, *, slot: str = "sign",
               certificate: bytes | None = None, revocation: str = "ocsp") -> dict[str, Any]:
        """:func:`verify` at the service's clock; an unexpected failure on hostile bytes is a
        failed ``signature`` check, never an exception (the reader's boundary)."""
        try:
            return verify(content, signature, roots=self.roots(), slot=slot,
                          certificate=certificate, revocation=revocation, at=self.clock(),
                          client=self.client, crl_cache=self.crl_cache, tsa_roots=self.tsa_roots())
        except Exception as exc:  # noqa: BLE001 - hostile bytes end as a refusal
            return _result([Check("signature", False,
                                  f"unverifiable: {type(exc).__name__}: {exc}", code="bad_signature")], None)

    def verify_pdf(self, pdf: bytes, *, revocation: str = "ocsp") -> dict[str, Any]:
        """Every signature of a signed PDF (:func:`reader.jpki_pdf.verify_pdf`) at the
        service's clock. Raises ImportError when pyHanko (the ``pdf`` extra) is missing."""
        from reader.jpki_pdf import verify_pdf

        return verify_pdf(pdf, roots=self.roots(), revocation=revocation, at=self.clock(), client=self.client,
                          crl_cache=self.crl_cache, tsa_roots=self.tsa_roots())

    def verify_xml(self, document: bytes, *, revocation: str = "ocsp") -> dict[str, Any]:
        """The enveloped signature of an XML document (:func:`reader.jpki_xml.verify_xml`) at
        the service's clock; an unexpected failure on hostile bytes is a failed ``signature``
        check, never an exception. Raises ImportError when signxml (the ``xml`` extra) is
        missing."""
        from reader.jpki_xml import verify_xml

        try:
            return verify_xml(document, roots=self.roots(), revocation=revocation, at=self.clock(),
                              client=self.client, crl_cache=self.crl_cache, tsa_roots=self.tsa_roots())
        except ImportError:
            raise
        except Exception as exc:  # noqa: BLE001 - hostile bytes end as a refusal, as in verify
            return _result([Check("signature", False, f"unverifiable: {type(exc).__name__}: {exc}",
                                  code="bad_signature")], None)
