"""What a relying party is told, case by case: every way a JPKI signature can fail gets its own
failed check with a reason that names the problem (never a traceback, never "valid").

The PKI is the test one of test_jpki_fixtures; OCSP is our responder (protocols.jpki.ocsp)
behind an httpx MockTransport, altered where a case needs a hostile or broken responder."""

from __future__ import annotations

from datetime import timedelta

import httpx
from cryptography.hazmat.primitives.serialization import Encoding
from test_jpki_cms import CONTENT, se_signer
from test_jpki_fixtures import CHIYODA, NOW, pki

from protocols.jpki import KeyType, Purpose
from protocols.jpki.cms import build_detached_signature
from protocols.jpki.crl import Revocation, RevocationReason, build_crl
from protocols.jpki.ocsp import (
    CertId,
    Good,
    OcspResponder,
    build_response,
    parse_request,
    respond,
)
from reader.relying_party import verify

P = pki(KeyType.EC_P384)
ROOTS = [P.roots[Purpose.SIGN], P.roots[Purpose.AUTH]]
SERIAL = 700
REASONS = ["keyCompromise", "affiliationChanged", "superseded", "cessationOfOperation", "certificateHold"]


def _signed(purpose: Purpose = Purpose.SIGN, serial: int = SERIAL, signing_time=NOW):
    cert, key = (P.issue_signing if purpose is Purpose.SIGN else P.issue_auth)(serial)
    return cert, build_detached_signature(content=CONTENT, certificate=cert, sign=se_signer(key),
                                          signing_time=signing_time)


CERT, SIG = _signed()


def _responder(purpose: Purpose = Purpose.SIGN) -> OcspResponder:
    return OcspResponder(P.responders[purpose], P.responder_keys[purpose], P.roots[purpose],
                         timedelta(minutes=10))


def _client(answer) -> httpx.Client:
    """A responder: ``answer(request DER) -> response DER``, or an exception to raise."""
    def handle(request: httpx.Request) -> httpx.Response:
        if isinstance(answer, Exception):
            raise answer
        return httpx.Response(200, content=answer(request.content))
    return httpx.Client(transport=httpx.MockTransport(handle))


def _ours(status, now=NOW):
    return lambda req: respond(req, lambda cid: status, _responder(), now)


def _rebuilt(cert_id=lambda cid: cid, nonce=lambda n: n, status=Good()):
    """Our responder's signed answer to the request, with its CertID or nonce replaced."""
    def answer(req: bytes) -> bytes:
        r = parse_request(req)
        return build_response(responder=_responder(), answers=[(cert_id(r.cert_ids[0]), status)],
                              now=NOW, nonce=nonce(r.nonce))
    return answer


def _crl(revocations=(), this=NOW - timedelta(hours=1), nxt=NOW + timedelta(hours=5), partition=CHIYODA) -> bytes:
    return build_crl(profile=P.profile, purpose=Purpose.SIGN, issuer=P.roots[Purpose.SIGN],
                     issuer_key=P.root_keys[Purpose.SIGN], partition=partition, revocations=revocations,
                     crl_number=3, this_update=this, next_update=nxt).public_bytes(Encoding.DER)


def _failed(result) -> dict[str, str]:
    assert result["valid"] is False, result
    return {c["name"]: c["reason"] for c in result["checks"] if not c["passed"]}


def test_an_ocsp_answer_about_the_same_serial_under_another_issuer_is_not_an_answer():
    """RFC 6960 4.1.1: a serial is unique under one issuer; an answer whose CertID names another
    CA (here the user-authentication root) says nothing of this certificate, even when signed
    by this root's responder: with ``auto`` the CRL is asked instead."""
    other = _rebuilt(cert_id=lambda cid: CertId.for_certificate(CERT, P.roots[Purpose.AUTH], cid.hash_algorithm))
    failed = _failed(verify(CONTENT, SIG, roots=ROOTS, at=NOW, client=_client(other)))
    assert failed["revocation"].startswith("OCSP response is about another certificate: its CertID names "
                                           "another issuer"), failed
    revoked = _crl([Revocation(SERIAL, NOW - timedelta(hours=1), RevocationReason.KEY_COMPROMISE)])
    failed = _failed(verify(CONTENT, SIG, roots=ROOTS, at=NOW, revocation="auto", client=_client(other), crl=revoked))
    assert "CRL fallback: revoked (keyCompromise)" in failed["revocation"], failed
