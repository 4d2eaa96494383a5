"""The relying party's revocation checks at their edges: each test holds one check that a
mutation of reader/relying_party.py (or of the CRL and OCSP judging it relies on) could
otherwise remove without any other test failing. Same PKI and responder as
test_rp_jpki_verdicts."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from test_ca_crl import CA as TSA_ROOT
from test_ca_crl import KEY as TSA_KEY
from test_ca_crl import without_next_update
from test_jpki_cms import CONTENT, se_signer
from test_jpki_fixtures import CHIYODA, NOW, new_key, pki
from test_rp_jpki_verdicts import (
    CERT,
    ROOTS,
    SERIAL,
    SIG,
    P,
    _client,
    _crl,
    _failed,
    _ours,
    _responder,
)

from protocols import certs
from protocols import crl as ca_crl
from protocols.jpki import KeyType, Purpose, Validity
from protocols.jpki.certificates import build_ocsp_responder_certificate
from protocols.jpki.cms import build_detached_signature
from protocols.jpki.crl import Revocation, RevocationReason, issuing_distribution_point
from protocols.jpki.ocsp import (
    CertId,
    Good,
    OcspResponder,
    ResponseStatus,
    Revoked,
    Unknown,
    build_response,
    error_response,
    respond,
)
from protocols.jpki.relying_party import Check, unavailable
from protocols.tsp.token import TimeStamp
from reader.crl_cache import CrlCache
from reader.relying_party import (
    EmbeddedRevocation,
    RelyingPartyService,
    check_embedded,
    check_ocsp,
    check_revocation_crl,
    revoked_after,
    signature_timestamp,
    tsa_unit_refusal,
    verify,
)


@pytest.mark.parametrize(("ahead", "taken"), [(timedelta(minutes=4, seconds=30), True),
                                              (timedelta(minutes=5), True),
                                              (timedelta(minutes=5, seconds=1), False)])
def test_an_ocsp_answer_from_the_future_is_taken_within_five_minutes_only(ahead, taken):
    """thisUpdate may lie SKEW (5 minutes) after the relying party's clock, a responder's
    clock running ahead; an answer dated further on is not current (RFC 6960 4.2.2.1)."""
    result = verify(CONTENT, SIG, roots=ROOTS, at=NOW, client=_client(_ours(Good(), now=NOW + ahead)))
    if taken:
        assert result["valid"], result
    else:
        assert _failed(result)["revocation"].startswith("OCSP response is not current: thisUpdate"), result


def _root_as_responder() -> OcspResponder:
    """The root answering for its certificates with its own key, its certificate in the
    response's certs (as `openssl ocsp -rsigner <CA>` sends it)."""
    return OcspResponder(P.roots[Purpose.SIGN], P.root_keys[Purpose.SIGN], P.roots[Purpose.SIGN],
                         timedelta(minutes=10))


@pytest.mark.parametrize("status", [Good(), Revoked(NOW - timedelta(hours=1), RevocationReason.SUPERSEDED)])
def test_an_ocsp_answer_signed_by_the_root_itself_is_an_answer(status):
    """RFC 6960 4.2.2.2: the CA that issued the certificate may sign the response. It was
    refused as "not signed by the root" when the root's certificate came along in certs: the
    copy was taken for a delegated responder and failed for want of id-kp-OCSPSigning."""
    answer = lambda req: respond(req, lambda cid: status, _root_as_responder(), NOW)  # noqa: E731
    result = verify(CONTENT, SIG, roots=ROOTS, at=NOW, client=_client(answer))
    check = result["checks"][-1]
    assert check["code"] == ("good" if isinstance(status, Good) else "revoked"), check
    # with auto, a verified "revoked" from the root is final: no CRL is asked
    auto = verify(CONTENT, SIG, roots=ROOTS, at=NOW, revocation="auto", client=_client(answer), crl=b"not a CRL")
    assert auto["checks"][-1]["code"] == check["code"], auto


def _delegated(not_before, not_after) -> OcspResponder:
    key = new_key(P.key_type)
    cert = build_ocsp_responder_certificate(
        profile=P.profile, purpose=Purpose.SIGN, issuer=P.roots[Purpose.SIGN], issuer_key=P.root_keys[Purpose.SIGN],
        responder_key=key.public_key(), serial=2100, validity=Validity(not_before, not_after))
    return OcspResponder(cert, key, P.roots[Purpose.SIGN], timedelta(minutes=10))


@pytest.mark.parametrize(("not_before", "not_after"), [
    (NOW - timedelta(days=20), NOW - timedelta(days=1)),  # expired: its key may since have been retired or leaked
    (NOW + timedelta(days=1), NOW + timedelta(days=60)),  # not yet valid
])
def test_an_ocsp_answer_from_a_delegated_responder_outside_its_validity_is_not_an_answer(not_before, not_after):
    """A delegated responder's certificate is validated like any other (RFC 5280 6.1.3):
    an answer signed with the key of one that is not valid at the time asked is no answer."""
    responder = _delegated(not_before, not_after)
    answer = lambda req: respond(req, lambda cid: Good(), responder, NOW)  # noqa: E731
    failed = _failed(verify(CONTENT, SIG, roots=ROOTS, at=NOW, client=_client(answer)))
    assert failed["revocation"].startswith("OCSP response is signed by a delegated responder whose certificate "
                                           "is not valid at"), failed
    # the same responder, inside its validity, is taken
    inside = not_before + timedelta(hours=1)
    ok = verify(CONTENT, SIG, roots=ROOTS, at=inside,
                client=_client(lambda req: respond(req, lambda cid: Good(), responder, inside)))
    assert ok["checks"][-1]["code"] == "good", ok


def test_an_ocsp_answer_from_a_delegated_responder_marking_an_unprocessed_extension_critical_is_no_answer():
    """RFC 5280 4.2: the delegated responder's certificate, issued by the root with
    id-kp-OCSPSigning and valid, but with an unknown extension marked critical, is not
    relied on: its answer is no answer (before, the extension was ignored and it said good)."""
    from test_jpki_chain_checks import _copy_of

    good = _delegated(NOW - timedelta(days=1), NOW + timedelta(days=30))
    unknown = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.9"), b"\x05\x00")
    marked = _copy_of(good.certificate, None, issuer_key=P.root_keys[Purpose.SIGN], extra=[(unknown, True)])
    responder = dataclasses.replace(good, certificate=marked)
    answer = lambda req: respond(req, lambda cid: Good(), responder, NOW)  # noqa: E731
    failed = _failed(verify(CONTENT, SIG, roots=ROOTS, at=NOW, client=_client(answer)))
    assert failed["revocation"].startswith("OCSP response is signed by a delegated responder whose certificate "
                                           "cannot be relied on: it carries the critical extension "
                                           "1.3.6.1.4.1.99999.9"), failed
    ok = verify(CONTENT, SIG, roots=ROOTS, at=NOW, client=_client(lambda req: respond(req, lambda cid: Good(), good,
                                                                                       NOW)))
    assert ok["checks"][-1]["code"] == "good", ok


def test_an_ocsp_answer_signed_by_the_root_is_an_answer_whatever_certificates_it_carries():
    """The responderID and the certificates sent along are hints: a root-signed answer that
    carries another certificate (here the user-authentication responder's) is still the
    root's answer, where only that certificate was tried; and that responder's own answer
    is not."""
    root, root_key = P.roots[Purpose.SIGN], P.root_keys[Purpose.SIGN]
    other = P.responders[Purpose.AUTH]

    def answer(key, named, status=ocsp.OCSPCertStatus.GOOD):
        def build(req: bytes) -> bytes:
            asked = ocsp.load_der_ocsp_request(req)
            nonce = asked.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
            built = (ocsp.OCSPResponseBuilder()
                     .add_response_by_hash(asked.issuer_name_hash, asked.issuer_key_hash, asked.serial_number,
                                           asked.hash_algorithm, status, NOW, NOW + timedelta(minutes=10), None, None)
                     .responder_id(ocsp.OCSPResponderEncoding.HASH, named).certificates([other])
                     .add_extension(x509.OCSPNonce(nonce), critical=False))
            return built.sign(key, hashes.SHA384()).public_bytes(Encoding.DER)
        return build

    result = verify(CONTENT, SIG, roots=ROOTS, at=NOW, client=_client(answer(root_key, root)))
    assert result["checks"][-1]["code"] == "good", result
    forged = verify(CONTENT, SIG, roots=ROOTS, at=NOW, client=_client(answer(P.responder_keys[Purpose.AUTH], other)))
    assert _failed(forged)["revocation"] == ("OCSP response is not signed by the root or a delegated responder "
                                             "of that root"), forged


@pytest.mark.parametrize("key_type", [KeyType.RSA_2048, KeyType.EC_P384])
def test_an_ocsp_answer_whose_signature_was_altered_is_no_answer(key_type):
    """The responder's signature over the answer is verified, RSA and ECDSA alike: a "good"
    whose signature does not verify (altered in transit, or made up by whoever sits between
    the relying party and the responder) is refused. No test altered one before: dropping
    either verify call left the suite green."""
    pki_ = pki(key_type)
    cert, key = pki_.issue_signing(SERIAL)
    sig = build_detached_signature(content=CONTENT, certificate=cert, sign=se_signer(key), signing_time=NOW)
    roots = [pki_.roots[Purpose.SIGN]]
    responder = OcspResponder(pki_.responders[Purpose.SIGN], pki_.responder_keys[Purpose.SIGN],
                              pki_.roots[Purpose.SIGN], timedelta(minutes=10))

    def altered(req: bytes) -> bytes:
        der = respond(req, lambda cid: Good(), responder, NOW)
        signature = ocsp.load_der_ocsp_response(der).signature
        at = der.index(signature) + len(signature) // 2
        return der[:at] + bytes([der[at] ^ 0x01]) + der[at + 1:]

    genuine = verify(CONTENT, sig, roots=roots, at=NOW,
                     client=_client(lambda req: respond(req, lambda cid: Good(), responder, NOW)))
    assert genuine["valid"], genuine
    failed = _failed(verify(CONTENT, sig, roots=roots, at=NOW, client=_client(altered)))
    assert failed == {"revocation": "OCSP response is not signed by the root or a delegated responder of that root"}


def test_the_ocsp_request_carries_a_non_critical_nonce_that_the_answer_must_echo():
    """RFC 8954: the nonce is a non-critical extension (a responder that does not know it
    still answers); each request has its own."""
    sent = []

    def answer(req: bytes) -> bytes:
        sent.append(ocsp.load_der_ocsp_request(req))
        return respond(req, lambda cid: Good(), _responder(), NOW)

    for _ in range(2):
        assert verify(CONTENT, SIG, roots=ROOTS, at=NOW, client=_client(answer))["valid"]
    nonces = [r.extensions.get_extension_for_class(x509.OCSPNonce) for r in sent]
    assert [n.critical for n in nonces] == [False, False]
    assert nonces[0].value.nonce != nonces[1].value.nonce and len(nonces[0].value.nonce) >= 16


@pytest.mark.parametrize(("answered", "taken"), [(NOW - timedelta(minutes=10), True),
                                                 (NOW - timedelta(minutes=10, seconds=1), False)])
def test_an_ocsp_answer_is_current_up_to_its_next_update_itself(answered, taken):
    """nextUpdate (thisUpdate + the responder's 10 minutes) equal to the relying party's
    clock: still current; a second later: not (RFC 6960 4.2.2.1)."""
    result = verify(CONTENT, SIG, roots=ROOTS, at=NOW, client=_client(_ours(Good(), now=answered)))
    if taken:
        assert result["valid"], result
    else:
        assert _failed(result)["revocation"].startswith("OCSP response is not current: nextUpdate"), result


@pytest.mark.parametrize(("later", "taken"), [(timedelta(0), True), (timedelta(minutes=5), True),
                                              (timedelta(minutes=5, seconds=1), False), (timedelta(days=2), False)])
def test_an_ocsp_answer_without_next_update_is_taken_with_our_nonce_only_as_of_its_this_update(later, taken):
    """A responder may leave nextUpdate out (RFC 6960 2.4, 4.2.2.1: newer information is
    always available; `openssl ocsp` without -ndays does): with the nonce echoed, the answer
    was made for this request, and its thisUpdate now or up to SKEW (5 minutes) before the
    relying party's clock is taken. One dated days before is not: the nonce proves when the
    answer was signed, not that the status it gives is newer than its thisUpdate; it was
    taken as current for ever (here two days on)."""
    root, key = P.responders[Purpose.SIGN], P.responder_keys[Purpose.SIGN]

    def answer(req: bytes) -> bytes:
        asked = ocsp.load_der_ocsp_request(req)
        nonce = asked.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
        built = (ocsp.OCSPResponseBuilder()
                 .add_response_by_hash(asked.issuer_name_hash, asked.issuer_key_hash, asked.serial_number,
                                       asked.hash_algorithm, ocsp.OCSPCertStatus.GOOD, NOW, None, None, None)
                 .responder_id(ocsp.OCSPResponderEncoding.HASH, root).certificates([root])
                 .add_extension(x509.OCSPNonce(nonce), critical=False))
        return built.sign(key, hashes.SHA384()).public_bytes(Encoding.DER)

    result = verify(CONTENT, SIG, roots=ROOTS, at=NOW + later, client=_client(answer))
    if taken:
        assert result["checks"][-1]["code"] == "good", result
    else:
        check = result["checks"][-1]
        assert (check["passed"], check["code"]) == (False, "unavailable"), check
        assert check["reason"] == (
            "OCSP response is not current: it has no nextUpdate (newer information is always available, RFC 6960 "
            f"4.2.2.1), and its thisUpdate {NOW.isoformat()} is more than 0:05:00 before {(NOW + later).isoformat()}")


@pytest.mark.parametrize(("not_before", "not_after"), [
    (NOW - timedelta(days=20), NOW),  # its last instant
    (NOW + timedelta(minutes=5), NOW + timedelta(days=60)),  # issued a moment ago by a clock 5 minutes ahead
])
def test_a_delegated_responder_is_taken_from_its_not_before_less_five_minutes_to_its_not_after(not_before, not_after):
    responder = _delegated(not_before, not_after)
    result = verify(CONTENT, SIG, roots=ROOTS, at=NOW,
                    client=_client(lambda req: respond(req, lambda cid: Good(), responder, NOW)))
    assert result["checks"][-1]["code"] == "good", result


def _issued_by_the_root_with_eku(eku) -> tuple:
    key = new_key(P.key_type)
    root = P.roots[Purpose.SIGN]
    cert = (x509.CertificateBuilder().subject_name(x509.Name.from_rfc4514_string("CN=not a responder"))
            .issuer_name(root.subject).public_key(key.public_key()).serial_number(2200)
            .not_valid_before(NOW - timedelta(days=1)).not_valid_after(NOW + timedelta(days=30))
            .add_extension(x509.ExtendedKeyUsage(eku), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root.public_key()), critical=False)
            .sign(P.root_keys[Purpose.SIGN], hashes.SHA384()))
    return cert, key


@pytest.mark.parametrize("signer", ["the user's own signing certificate", "a certificate for TLS clients"])
def test_a_certificate_of_the_root_without_ocsp_signing_cannot_vouch_for_revocation(signer):
    """Only a certificate the root issued with id-kp-OCSPSigning may answer for it (RFC 6960
    4.2.2.2): an answer "good" signed with the key of a user's own certificate (no EKU: the
    holder of a revoked certificate answering for it) or of one with another EKU is refused."""
    if signer == "the user's own signing certificate":
        cert, key = P.issue_signing(SERIAL + 1)
    else:
        cert, key = _issued_by_the_root_with_eku([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH])
    own = OcspResponder(cert, key, P.roots[Purpose.SIGN], timedelta(minutes=10))
    failed = _failed(verify(CONTENT, SIG, roots=ROOTS, at=NOW,
                            client=_client(lambda req: respond(req, lambda cid: Good(), own, NOW))))
    assert failed == {"revocation": "OCSP response is not signed by the root or a delegated responder of that root"}


def _distribution_point(status: int, body: bytes = b"") -> httpx.Client:
    """The certificate's CRL distribution point over HTTP, answering ``status`` with ``body``."""
    def handle(request: httpx.Request) -> httpx.Response:
        assert request.method == "GET" and request.url == certs.crl_url(CERT)
        return httpx.Response(status, content=body)
    return httpx.Client(transport=httpx.MockTransport(handle))


def test_the_crl_is_fetched_from_the_distribution_point_and_an_http_error_there_is_unavailable():
    revoked = _crl([Revocation(SERIAL, NOW - timedelta(hours=1), RevocationReason.KEY_COMPROMISE)])
    result = verify(CONTENT, SIG, roots=ROOTS, at=NOW, revocation="crl", client=_distribution_point(200, revoked))
    check = result["checks"][-1]
    assert (check["code"], check["revocation_reason"]) == ("revoked", "keyCompromise"), check
    assert verify(CONTENT, SIG, roots=ROOTS, at=NOW, revocation="crl",
                  client=_distribution_point(200, _crl()))["valid"]
    for status in (404, 503):
        failed = _failed(verify(CONTENT, SIG, roots=ROOTS, at=NOW, revocation="crl",
                                client=_distribution_point(status, revoked)))
        assert failed == {"revocation": f"CRL at {certs.crl_url(CERT)}: HTTP {status}"}, failed


# -- validation data embedded with a time-stamped signature (PAdES B-LT, --revocation embedded) --

STAMPED = NOW - timedelta(hours=3)


def _stamp(at=STAMPED) -> TimeStamp:
    """A verified signature time-stamp at ``at`` (±1 s): all check_embedded reads of it."""
    root = P.roots[Purpose.SIGN]
    return TimeStamp(gen_time=at, accuracy=timedelta(seconds=1), serial=1, policy="1.2.3.4", hash_algorithm="sha256",
                     message_digest=b"\0" * 32, nonce=None, tsa_certificate=root, root=root)


def _kept_answer(status, *, made=STAMPED, serial=SERIAL) -> bytes:
    """An OCSP answer as a signer keeps it with the signature: no nonce, made at ``made``."""
    cert_id = CertId.for_certificate(CERT, P.roots[Purpose.SIGN], "sha256")
    return build_response(responder=_responder(), answers=[(dataclasses.replace(cert_id, serial=serial), status)],
                          now=made)


def _embedded(ocsp_responses=(), crls=()) -> dict:
    return check_embedded(CERT, P.roots[Purpose.SIGN], _stamp(), EmbeddedRevocation(tuple(ocsp_responses),
                                                                                     tuple(crls))).to_dict()


def test_an_embedded_ocsp_revoked_before_the_time_stamp_fails_and_after_it_passes():
    before = _embedded([_kept_answer(Revoked(STAMPED - timedelta(hours=1), RevocationReason.KEY_COMPROMISE))])
    assert (before["passed"], before["code"], before["revocation_reason"]) == (False, "revoked", "keyCompromise")
    assert before["reason"].endswith("(OCSP, embedded)"), before
    # an answer made a moment after the time-stamp (still current at it) that says revoked
    # after it: the signature was made while the certificate was valid
    later = _embedded([_kept_answer(Revoked(STAMPED + timedelta(minutes=1), RevocationReason.SUPERSEDED),
                                    made=STAMPED + timedelta(minutes=2))])
    assert (later["passed"], later["code"]) == (True, "revoked_after_signing"), later


def test_an_embedded_ocsp_unknown_is_unknown():
    got = _embedded([_kept_answer(Unknown())])
    assert (got["passed"], got["code"], got["reason"]) == (False, "unknown", "OCSP status unknown (embedded)")


def test_embedded_answers_about_other_certificates_or_unsuccessful_are_passed_over_for_the_crl():
    """A PDF's store holds answers about other certificates (the TSA unit's, a chain's) and
    may hold an error answer: they are skipped, and the CRL that speaks for the certificate
    decides."""
    crl = _crl([Revocation(SERIAL, STAMPED - timedelta(hours=1), RevocationReason.AFFILIATION_CHANGED)],
               this=STAMPED - timedelta(hours=2), nxt=STAMPED + timedelta(hours=5))
    got = _embedded([_kept_answer(Good(), serial=SERIAL + 1), error_response(ResponseStatus.TRY_LATER), b"junk"],
                    [b"not a CRL", _crl(issuer=Purpose.AUTH, this=STAMPED - timedelta(hours=2)), crl])
    assert (got["code"], got["revocation_reason"]) == ("revoked", "affiliationChanged"), got
    assert got["reason"].endswith(", embedded)"), got


def test_embedded_data_not_current_at_the_time_stamp_is_no_answer_and_says_why():
    stale_answer = _kept_answer(Good(), made=STAMPED - timedelta(hours=1))  # nextUpdate 10 minutes later
    stale_crl = _crl(this=STAMPED - timedelta(days=2), nxt=STAMPED - timedelta(days=1))
    got = _embedded([stale_answer], [stale_crl])
    assert (got["passed"], got["code"]) == (False, "unavailable"), got
    assert "OCSP response is not current: nextUpdate" in got["reason"] and "(an answer produced" in got["reason"]
    assert "CRL is not current: nextUpdate" in got["reason"], got
    good_crl = _embedded([], [_crl(this=STAMPED - timedelta(hours=1), nxt=STAMPED + timedelta(hours=5))])
    assert (good_crl["passed"], good_crl["code"]) == (True, "good"), good_crl


def test_an_embedded_ocsp_good_current_at_the_time_stamp_passes_and_nothing_speaks_without_a_stamp():
    got = _embedded([_kept_answer(Good(), serial=SERIAL + 1), _kept_answer(Good())])
    assert (got["passed"], got["code"]) == (True, "good"), got
    assert got["reason"].startswith("OCSP good at ") and "(embedded), current at the signature's time-stamp" in got["reason"]
    unstamped = check_embedded(CERT, P.roots[Purpose.SIGN], None, EmbeddedRevocation((_kept_answer(Good()),)))
    assert (unstamped.passed, unstamped.code) == (False, "unavailable")
    assert unstamped.reason.startswith("embedded validation data needs a signature time-stamp"), unstamped


def test_embedded_answers_about_other_certificates_are_not_reasons():
    """Answers about other certificates say nothing about this one: "no answer" lists none of them."""
    got = _embedded([_kept_answer(Good(), serial=SERIAL + 1), error_response(ResponseStatus.TRY_LATER)])
    assert got["reason"] == ("no embedded OCSP answer or CRL about the certificate was current at the time-stamp "
                             f"{STAMPED.isoformat()}"), got


def test_the_service_keeps_the_crls_it_fetches_in_its_cache_or_the_one_given():
    """RelyingPartyService: CRLs fetched for ``crl`` and ``auto`` are kept (one fetch for two
    verifications while current), in the CrlCache given or its own."""
    fetched = []

    def handle(request: httpx.Request) -> httpx.Response:
        fetched.append(request.url)
        return httpx.Response(200, content=_crl())

    client = httpx.Client(transport=httpx.MockTransport(handle))
    service = RelyingPartyService(ROOTS, client=client, clock=lambda: NOW)
    for _ in range(2):
        assert service.verify(CONTENT, SIG, revocation="crl")["valid"]
    assert len(fetched) == 1 and service.crl_cache.fetches == 1
    given = CrlCache()
    assert RelyingPartyService(ROOTS, crl_cache=given).crl_cache is given


def test_a_crl_in_the_roots_name_that_the_root_did_not_sign_is_not_taken():
    """A CRL is the root's by its signature and its issuer name: the root's CRL with one bit
    of its signature altered, or a CRL in the root's name signed by another key (one that
    leaves out the revoked entry), is refused; no test had one, and a check that refused only
    a CRL of another name *and* signature passed the suite."""
    revoked = [Revocation(SERIAL, NOW - timedelta(hours=1), RevocationReason.KEY_COMPROMISE)]
    genuine = _crl(revoked)
    signature = x509.load_der_x509_crl(genuine).signature
    at = genuine.index(signature) + len(signature) // 2
    altered = genuine[:at] + bytes([genuine[at] ^ 0x01]) + genuine[at + 1:]
    in_its_name = (x509.CertificateRevocationListBuilder().issuer_name(P.roots[Purpose.SIGN].subject)
                   .last_update(NOW - timedelta(hours=1)).next_update(NOW + timedelta(hours=5))
                   .sign(new_key(P.key_type), hashes.SHA384()).public_bytes(Encoding.DER))
    # and the root's key on a CRL in another CA's name (RFC 5280 6.3.3: the CRL issuer must match)
    another_name = (x509.CertificateRevocationListBuilder().issuer_name(x509.Name.from_rfc4514_string("CN=another CA"))
                    .last_update(NOW - timedelta(hours=1)).next_update(NOW + timedelta(hours=5))
                    .sign(P.root_keys[Purpose.SIGN], hashes.SHA384()).public_bytes(Encoding.DER))
    for crl in (altered, in_its_name, another_name):
        failed = _failed(verify(CONTENT, SIG, roots=ROOTS, at=NOW, revocation="crl", crl=crl))
        assert failed == {"revocation": "CRL is not signed by the certificate's root"}, failed


def test_user_authentication_takes_the_challenge_once_and_reads_the_roots_on_each_request():
    """RelyingPartyService.authenticate: the challenge it handed out, signed with a
    user-authentication certificate, is a valid login whose first check is the passed
    ``challenge``; the same challenge again is refused, its one check failed. Roots given
    as a callable are read per request (a root rollover seen without a restart)."""
    cert, key = P.issue_auth(SERIAL + 2)
    asked = []
    service = RelyingPartyService(lambda: asked.append(1) or ROOTS, clock=lambda: NOW)
    challenge = service.challenge()
    signature = key.sign(challenge.nonce, ec.ECDSA(hashes.SHA384()))
    der = cert.public_bytes(Encoding.DER)
    login = service.authenticate(challenge.id, signature, der, revocation="none")
    assert login["valid"], login
    assert [(c["name"], c["passed"]) for c in login["checks"]][:2] == [("challenge", True), ("signature", True)]
    again = service.authenticate(challenge.id, signature, der, revocation="none")
    assert not again["valid"] and [(c["name"], c["passed"]) for c in again["checks"]] == [("challenge", False)]
    assert len(asked) == 1  # the refused challenge asked for no roots; the login once


def test_an_unexpected_failure_in_the_service_is_a_failed_verdict_never_a_valid_one():
    def unreadable_roots():
        raise OSError("trust bundle unreadable")

    said = RelyingPartyService(unreadable_roots, clock=lambda: NOW).verify(CONTENT, SIG, revocation="none")
    assert not said["valid"] and [(c["name"], c["passed"], c["code"]) for c in said["checks"]] == [
        ("signature", False, "bad_signature")], said
    assert said["checks"][0]["reason"] == "unverifiable: OSError: trust bundle unreadable"


def test_embedded_revocation_for_a_raw_signature_is_a_refusal_not_an_exception():
    """A raw signature (certificate given separately) carries no validation data and no
    time-stamp: --revocation embedded refuses it; it once reached for the CMS's own data."""
    cert, key = P.issue_auth(SERIAL + 3)
    signature = key.sign(CONTENT, ec.ECDSA(hashes.SHA384()))
    result = verify(CONTENT, signature, roots=ROOTS, at=NOW, slot="auth", revocation="embedded",
                    certificate=cert.public_bytes(Encoding.DER))
    assert _failed(result) == {"revocation": "embedded validation data needs a signature time-stamp: without one, "
                                             "nothing says when the signature was made"}, result


def test_a_crl_is_current_up_to_its_next_update_itself():
    crl = _crl(this=NOW - timedelta(hours=1), nxt=NOW)
    assert verify(CONTENT, SIG, roots=ROOTS, at=NOW, revocation="crl", crl=crl)["valid"]
    late = verify(CONTENT, SIG, roots=ROOTS, at=NOW + timedelta(seconds=1), revocation="crl", crl=crl)
    assert _failed(late)["revocation"].startswith("CRL is not current: nextUpdate"), late


def test_a_raw_signature_with_a_key_neither_rsa_nor_ec_is_refused():
    """_verify_raw knows RSA (PKCS#1 v1.5, SHA-256) and ECDSA (SHA-384): an Ed25519
    certificate's signature is refused as unsupported, never taken."""
    key = ed25519.Ed25519PrivateKey.generate()
    name = x509.Name.from_rfc4514_string("CN=not JPKI")
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(NOW - timedelta(days=1)).not_valid_after(NOW + timedelta(days=1))
            .sign(key, None))
    result = verify(CONTENT, key.sign(CONTENT), roots=ROOTS, at=NOW, revocation="none",
                    certificate=cert.public_bytes(Encoding.DER))
    check = result["checks"][0]
    assert (check["name"], check["passed"], check["code"]) == ("signature", False, "bad_signature"), result
    assert check["reason"] == "unsupported key Ed25519PublicKey", check


def test_a_raw_ecdsa_signature_over_other_bytes_is_refused():
    cert, key = P.issue_auth(SERIAL + 4)
    result = verify(CONTENT, key.sign(CONTENT + b"!", ec.ECDSA(hashes.SHA384())), roots=ROOTS, at=NOW,
                    slot="auth", revocation="none", certificate=cert.public_bytes(Encoding.DER))
    assert _failed(result) == {"signature": "raw signature does not verify over the content"}, result


def test_a_certificate_naming_no_responder_or_distribution_point_cannot_be_asked():
    cert, _key = _issued_by_the_root_with_eku([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH])
    root = P.roots[Purpose.SIGN]
    asked = check_ocsp(cert, root, NOW)
    assert (asked.passed, asked.code, asked.reason) == (False, "unavailable", "certificate names no OCSP responder")
    crl = check_revocation_crl(cert, root, NOW)
    assert (crl.passed, crl.code, crl.reason) == (False, "unavailable", "certificate names no CRL distribution point")


def test_a_raw_signature_is_checked_over_the_content_not_a_digest_of_it():
    cert, key = P.issue_auth(SERIAL + 5)
    result = verify(lambda name: b"\0" * 48, key.sign(CONTENT, ec.ECDSA(hashes.SHA384())), roots=ROOTS, at=NOW,
                    slot="auth", revocation="none", certificate=cert.public_bytes(Encoding.DER))
    assert _failed(result) == {
        "signature": "a raw signature is checked over the content itself, not a digest of it"}, result


def test_a_time_stamp_with_no_trusted_time_stamping_root_is_not_taken():
    check, stamp = signature_timestamp([(b"a token", b"a signature value")], ())
    assert (check.name, check.passed, stamp) == ("signature_timestamp", False, None)
    assert check.reason == "the signature carries a time-stamp, but no time-stamping root is trusted here"


def test_revoked_after_touches_only_a_verified_revoked():
    """A failed revocation check without a revocation time (no answer) or a passed one is
    returned as it is, whatever the time-stamp; a revocation after it passes."""
    for check in (unavailable("OCSP responder unreachable"), Check("revocation", True, "good", code="good")):
        assert revoked_after(check, _stamp()) is check
    later = revoked_after(Check("revocation", False, "revoked", STAMPED + timedelta(hours=1), code="revoked",
                                revocation_reason="superseded"), _stamp())
    assert (later.passed, later.code, later.revocation_reason) == (True, "revoked_after_signing", "superseded")


# -- what a CRL or an OCSP answer may not be read to say (RFC 5280 5.1.2.5, 5.2, 6.3.3; RFC 6960 4.2.2.1) --

ROOT, ROOT_KEY = P.roots[Purpose.SIGN], P.root_keys[Purpose.SIGN]
OUR_IDP = issuing_distribution_point(P.profile, CHIYODA)  # the partition CERT names


def _idp(*, full_name=None, user=False, ca=False, reasons=None, indirect=False, attribute=False):
    return x509.IssuingDistributionPoint(full_name=full_name, relative_name=None, only_contains_user_certs=user,
                                         only_contains_ca_certs=ca, only_some_reasons=reasons, indirect_crl=indirect,
                                         only_contains_attribute_certs=attribute)


def _root_crl(revoked=(), *, this=NOW - timedelta(hours=1), nxt=NOW + timedelta(hours=5), number=3, idp=OUR_IDP,
              extensions=(), undated=False) -> bytes:
    """The root's CRL built with cryptography's builder as another CA might make it:
    ``revoked`` (serial, CRLReason name, when), ``idp`` (None: none), more (extension,
    critical) pairs, and without nextUpdate when ``undated``."""
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ROOT.subject).last_update(this).next_update(nxt)
               .add_extension(x509.CRLNumber(number), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ROOT.public_key()), critical=False))
    if idp is not None:
        builder = builder.add_extension(idp, critical=True)
    for ext, critical in extensions:
        builder = builder.add_extension(ext, critical=critical)
    for serial, reason, at in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(at)
            .add_extension(x509.CRLReason(x509.ReasonFlags(reason)), critical=False).build())
    crl = builder.sign(ROOT_KEY, hashes.SHA384())
    return (without_next_update(crl, ROOT_KEY) if undated else crl).public_bytes(Encoding.DER)


def _crl_check(crl: bytes, at=NOW) -> dict:
    return verify(CONTENT, SIG, roots=ROOTS, at=at, revocation="crl", crl=crl)["checks"][-1]


def test_a_crl_without_next_update_is_believed_when_it_lists_the_certificate_never_that_it_does_not():
    """RFC 5280 5.1.2.5: a CA MUST give nextUpdate. A list without one was taken as current
    for ever, "good" included; now its silence says nothing (unavailable, by name), while a
    final revocation on it is believed (never taken back) and a hold is not (it may have
    been lifted since, and nothing says the list still stands)."""
    silent = _crl_check(_root_crl(undated=True), at=NOW + timedelta(days=30))
    assert (silent["passed"], silent["code"]) == (False, "unavailable"), silent
    assert silent["reason"] == ("CRL is incomplete: it has no nextUpdate (RFC 5280 5.1.2.5 requires one): nothing "
                                "bounds how long it stands, so it cannot say a certificate is not revoked")
    revoked = _crl_check(_root_crl([(SERIAL, "keyCompromise", NOW - timedelta(hours=2))], undated=True))
    assert (revoked["code"], revoked["revocation_reason"]) == ("revoked", "keyCompromise"), revoked
    held = _crl_check(_root_crl([(SERIAL, "certificateHold", NOW - timedelta(hours=2))], undated=True))
    assert (held["passed"], held["code"]) == (False, "unavailable"), held
    assert held["reason"].startswith("CRL lists the certificate on hold but has no nextUpdate"), held
    # the same lists with a nextUpdate: good, revoked, on hold
    assert _crl_check(_root_crl())["code"] == "good"
    assert _crl_check(_root_crl([(SERIAL, "certificateHold", NOW - timedelta(hours=2))]))["code"] == "on_hold"


@pytest.mark.parametrize(("idp", "code", "said"), [
    # no distribution point named: the whole root's scope, as far as the flags go (it was "different CRL scope")
    (_idp(user=True), "good", "not on the CRL"),
    (_idp(full_name=OUR_IDP.full_name, user=True), "good", "not on the CRL"),
    (_idp(ca=True), "unavailable", "different CRL scope: the CRL's issuingDistributionPoint says it lists CA "
                                   "certificates only (onlyContainsCACerts), and this is an end-entity certificate"),
    (_idp(attribute=True), "unavailable", "different CRL scope: the CRL's issuingDistributionPoint says it lists "
                                          "attribute certificates only (onlyContainsAttributeCerts)"),
    (_idp(full_name=OUR_IDP.full_name, indirect=True), "unavailable", "CRL cannot be used: an indirect CRL"),
    (_idp(reasons=frozenset({x509.ReasonFlags.key_compromise})), "unavailable",
     "CRL is incomplete: it lists revocations for some reasons only (issuingDistributionPoint onlySomeReasons: "
     "keyCompromise), so it cannot say a certificate is not revoked"),
])
def test_the_issuing_distribution_point_is_read_whole(idp, code, said):
    """RFC 5280 6.3.3 (b)(2), (d): the only* flags and onlySomeReasons of an
    issuingDistributionPoint, and one that names no distribution point."""
    check = _crl_check(_root_crl(idp=idp))
    assert check["code"] == code and check["reason"].startswith(said), check


def test_a_crl_for_some_reasons_only_still_says_revoked_for_those():
    reasons = _idp(full_name=OUR_IDP.full_name, reasons=frozenset({x509.ReasonFlags.key_compromise}))
    check = _crl_check(_root_crl([(SERIAL, "keyCompromise", NOW - timedelta(hours=2))], idp=reasons))
    assert (check["code"], check["revocation_reason"]) == ("revoked", "keyCompromise"), check


@pytest.mark.parametrize(("extension", "said"), [
    (x509.DeltaCRLIndicator(2), "CRL cannot be used: a delta CRL (deltaCRLIndicator: only the changes since base "
                                "CRL number 2); delta CRLs are not supported here"),
    (x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.7"), b"\x05\x00"),
     "CRL cannot be used: critical extension 1.3.6.1.4.1.99999.7 is not processed here (RFC 5280 5.2)"),
])
def test_a_delta_crl_or_one_with_an_unknown_critical_extension_is_not_used(extension, said):
    """A delta CRL lists only what changed since its base: taken as a full list, a
    certificate revoked before the base would read "good". A critical extension not
    processed here forbids using the CRL at all (RFC 5280 5.2); cryptography raises nothing
    for it. Both were taken; a listed certificate is not believed from them either."""
    for revoked in ((), [(SERIAL, "keyCompromise", NOW - timedelta(hours=2))]):
        check = _crl_check(_root_crl(revoked, extensions=[(extension, True)], number=4))
        assert (check["passed"], check["code"]) == (False, "unavailable"), check
        assert check["reason"].startswith(said), check


def test_embedded_crls_the_newest_decides_not_the_first():
    """Of several CRLs a signature carries, all current at its time-stamp, the newest (by
    cRLNumber) decides: the first one was taken, so an older list without the entry hid a
    newer one with it. An older complete list still speaks when the newest cannot say
    "good" (no nextUpdate) and does not list the certificate."""
    older = _root_crl(this=STAMPED - timedelta(hours=4), nxt=STAMPED + timedelta(hours=20), number=3)
    newer = _root_crl([(SERIAL, "keyCompromise", STAMPED - timedelta(hours=2))], this=STAMPED - timedelta(hours=1),
                      nxt=STAMPED + timedelta(hours=23), number=4)
    for crls in ([older, newer], [newer, older]):
        got = _embedded([], crls)
        assert (got["code"], got["revocation_reason"]) == ("revoked", "keyCompromise"), got
    undated = _root_crl(this=STAMPED - timedelta(hours=1), number=5, undated=True)
    got = _embedded([], [undated, older])
    assert (got["code"], got["passed"]) == ("good", True), got
    alone = _embedded([], [undated])
    assert alone["code"] == "unavailable" and "CRL is incomplete: it has no nextUpdate" in alone["reason"], alone


def _kept_without_next_update(status, this_update, revoked_at=None) -> bytes:
    """An OCSP answer kept with a signature, made by cryptography's builder with no
    nextUpdate, as a responder that promises none sends it."""
    responder, key = P.responders[Purpose.SIGN], P.responder_keys[Purpose.SIGN]
    reason = None if revoked_at is None else x509.ReasonFlags.key_compromise
    return (ocsp.OCSPResponseBuilder()
            .add_response(CERT, ROOT, hashes.SHA256(), status, this_update, None, revoked_at, reason)
            .responder_id(ocsp.OCSPResponderEncoding.HASH, responder).certificates([responder])
            .sign(key, hashes.SHA384()).public_bytes(Encoding.DER))


@pytest.mark.parametrize(("before", "taken"), [(timedelta(minutes=5), True), (timedelta(minutes=5, seconds=1), False),
                                               (timedelta(days=30), False)])
def test_an_embedded_ocsp_answer_without_next_update_speaks_only_for_its_this_update(before, taken):
    """RFC 6960 4.2.2.1: without nextUpdate, newer information is always available, so a
    kept "good" is as fresh as its thisUpdate only: taken for a time-stamp within SKEW (5
    minutes) of it. It was taken for any later time-stamp (a month on, here)."""
    got = _embedded([_kept_without_next_update(ocsp.OCSPCertStatus.GOOD, STAMPED - before)])
    if taken:
        assert (got["passed"], got["code"]) == (True, "good"), got
    else:
        assert (got["passed"], got["code"]) == (False, "unavailable"), got
        assert "OCSP response is not current: it has no nextUpdate" in got["reason"], got


def test_embedded_ocsp_answers_the_newest_decides_not_the_first():
    """Two answers current at the time-stamp, an older "good" first: the newer "revoked"
    decides (the first verified answer was taken)."""
    good = _kept_answer(Good(), made=STAMPED - timedelta(minutes=8))
    revoked = _kept_answer(Revoked(STAMPED - timedelta(minutes=6), RevocationReason.KEY_COMPROMISE),
                           made=STAMPED - timedelta(minutes=5))
    for answers in ([good, revoked], [revoked, good]):
        got = _embedded(answers)
        assert (got["code"], got["revocation_reason"]) == ("revoked", "keyCompromise"), got


def _tsa_unit() -> TimeStamp:
    """A time-stamp at STAMPED by a unit of test_ca_crl's CA that names its CRL."""
    key = ec.generate_private_key(ec.SECP256R1())
    unit = (x509.CertificateBuilder().subject_name(x509.Name.from_rfc4514_string("CN=tsa unit"))
            .issuer_name(TSA_ROOT.subject).public_key(key.public_key()).serial_number(77)
            .not_valid_before(STAMPED - timedelta(days=10)).not_valid_after(NOW + timedelta(days=30))
            .add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
                [x509.UniformResourceIdentifier("http://tsa.test/tsa/root.crl")], None, None, None)]), critical=False)
            .sign(TSA_KEY, hashes.SHA256()))
    return TimeStamp(gen_time=STAMPED, accuracy=timedelta(seconds=1), serial=1, policy="1.2.3.4",
                     hash_algorithm="sha256", message_digest=b"\0" * 32, nonce=None, tsa_certificate=unit, root=TSA_ROOT)


def _tsa_crl(number, revoked=(), undated=False) -> bytes:
    crl = ca_crl.crl_builder(TSA_ROOT, number=number, this_update=STAMPED - timedelta(hours=5 - number),
                             next_update=timedelta(days=1), revoked=revoked).sign(TSA_KEY, hashes.SHA256())
    return (without_next_update(crl, TSA_KEY) if undated else crl).public_bytes(Encoding.DER)


def test_a_tsa_unit_is_judged_on_the_newest_embedded_crl_and_never_good_from_one_without_next_update():
    """tsa_unit_refusal with the validation data a PDF carries took the first CRL current at
    the time-stamp; a newer one listing the unit (keyCompromise) was hidden by an older one.
    And a list without nextUpdate cannot say the unit is not revoked, embedded or fetched."""
    stamp = _tsa_unit()
    older = _tsa_crl(1)
    newer = _tsa_crl(2, [ca_crl.Revoked(77, STAMPED + timedelta(hours=1), "keyCompromise")])
    for crls in ((older, newer), (newer, older)):
        refused = tsa_unit_refusal(stamp, NOW, embedded=EmbeddedRevocation(crls=crls))
        assert refused is not None and (refused.code, refused.revocation_reason) == ("revoked", "keyCompromise")
    assert tsa_unit_refusal(stamp, NOW, embedded=EmbeddedRevocation(crls=(older,))) is None
    undated = _tsa_crl(3, undated=True)
    alone = tsa_unit_refusal(stamp, NOW, embedded=EmbeddedRevocation(crls=(undated,)))
    assert alone is not None and alone.code == "unavailable" and alone.reason.startswith(
        "the TSA unit's revocation cannot be checked: no CRL of its root current at the time-stamp is embedded "
        "(it has no nextUpdate"), alone
    assert tsa_unit_refusal(stamp, NOW, embedded=EmbeddedRevocation(crls=(undated, older))) is None
    fetched = tsa_unit_refusal(stamp, NOW, client=httpx.Client(transport=httpx.MockTransport(
        lambda request: httpx.Response(200, content=undated))))
    assert fetched is not None and fetched.reason.startswith(
        "the TSA unit's revocation cannot be checked: its root's CRL at http://tsa.test/tsa/root.crl: it has no "
        "nextUpdate"), fetched


# -- the invalidity date (RFC 5280 5.3.2): a hold made final, a key out of the holder's control --

HELD = STAMPED - timedelta(hours=1)  # on hold from before the time-stamp ...
FOUND = STAMPED + timedelta(hours=2)  # ... revoked for good after it
HELD_TEXT = HELD.isoformat()


def test_revoked_after_the_time_stamp_but_invalid_since_before_it_is_refused_from_ocsp_and_the_crl():
    """A certificate revoked after the signature's time-stamp but invalid since before it (a
    lost phone's: on hold from then, revoked when found) was not valid when it signed: the
    check stays ``revoked``, ``revoked_at`` the revocation's time, ``invalid_since`` the
    invalidity date, and the reason says both, from an OCSP answer (its singleExtension,
    embedded or asked) and from a CRL entry alike. Invalid only after the stamp: passes."""
    ocsp_before = _embedded([_kept_answer(Revoked(FOUND, RevocationReason.CESSATION_OF_OPERATION, HELD),
                                          made=STAMPED + timedelta(minutes=2))])
    crl = _crl([Revocation(SERIAL, FOUND, RevocationReason.CESSATION_OF_OPERATION, HELD)],
               this=STAMPED - timedelta(minutes=1), nxt=STAMPED + timedelta(hours=5))
    crl_before = _embedded(crls=[crl])
    for got in (ocsp_before, crl_before):
        assert (got["passed"], got["code"], got["revocation_reason"]) == (False, "revoked", "cessationOfOperation")
        assert (got["revoked_at"], got["invalid_since"]) == (FOUND.isoformat(), HELD_TEXT), got
        assert f"revoked (cessationOfOperation) at {FOUND.isoformat()}, invalid since {HELD_TEXT} " in got["reason"]
        assert "is after the certificate became invalid" in got["reason"], got
    # asked now (OCSP, CRL): the same
    stamp = _stamp()
    asked = revoked_after(check_ocsp(CERT, ROOT, NOW, client=_client(_ours(
        Revoked(FOUND, RevocationReason.CESSATION_OF_OPERATION, HELD)))), stamp).to_dict()
    listed = revoked_after(check_revocation_crl(CERT, ROOT, NOW, crl=_crl(
        [Revocation(SERIAL, FOUND, RevocationReason.CESSATION_OF_OPERATION, HELD)])), stamp).to_dict()
    for got in (asked, listed):
        assert (got["passed"], got["code"], got["invalid_since"]) == (False, "revoked", HELD_TEXT), got
    # invalid only after the time-stamp (a hold that began after it): made while valid
    later = revoked_after(check_ocsp(CERT, ROOT, NOW, client=_client(_ours(
        Revoked(FOUND, RevocationReason.CESSATION_OF_OPERATION, STAMPED + timedelta(hours=1))))), stamp).to_dict()
    assert (later["passed"], later["code"], later["revoked_at"]) == (True, "revoked_after_signing", FOUND.isoformat())
    assert later["invalid_since"] == (STAMPED + timedelta(hours=1)).isoformat()
    # no invalidity date: the member is null, and the revocation's time alone decides
    plain = revoked_after(check_ocsp(CERT, ROOT, NOW, client=_client(_ours(
        Revoked(FOUND, RevocationReason.CESSATION_OF_OPERATION)))), stamp).to_dict()
    assert (plain["code"], plain["invalid_since"]) == ("revoked_after_signing", None)
    assert "invalid since" not in plain["reason"]


def test_the_invalidity_date_is_read_from_the_single_response_about_the_certificate():
    """An answer about several certificates (RFC 6960 4.2.1) gives each its own
    singleExtensions: the invalidity date read is the one of the SingleResponse about this
    certificate, not the first one's."""
    ours = CertId.for_certificate(CERT, ROOT, "sha256")
    other = dataclasses.replace(ours, serial=SERIAL + 77)
    made = STAMPED + timedelta(minutes=2)
    der = build_response(responder=_responder(), now=made, answers=[
        (other, Revoked(FOUND, RevocationReason.CESSATION_OF_OPERATION, STAMPED - timedelta(days=9))),
        (ours, Revoked(FOUND, RevocationReason.CESSATION_OF_OPERATION, HELD))])
    got = _embedded([der])
    assert (got["code"], got["invalid_since"]) == ("revoked", HELD_TEXT), got
    der = build_response(responder=_responder(), now=made, answers=[
        (other, Revoked(FOUND, RevocationReason.CESSATION_OF_OPERATION, HELD)),
        (ours, Revoked(FOUND, RevocationReason.CESSATION_OF_OPERATION))])
    got = _embedded([der])
    assert (got["code"], got["invalid_since"]) == ("revoked_after_signing", None), got


def test_an_unstamped_signature_claiming_a_time_inside_the_invalidity_is_not_said_to_be_before_it():
    """An unstamped signature is refused whatever it claims; its signingTime is said to come
    before the revocation only when it comes before the certificate became invalid too."""
    from reader.relying_party import _claimed_before

    check = Check("revocation", False, "revoked", FOUND, code="revoked",
                  revocation_reason="cessationOfOperation", invalid_since=HELD)
    assert _claimed_before(check, STAMPED) is check  # inside the hold: nothing more to say
    assert "claims signingTime" in _claimed_before(check, HELD - timedelta(hours=1)).reason
