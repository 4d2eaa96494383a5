"""What a relying party is told, case by case: every way a JPKI signature can fail gets its own
failed check with a reason that names the problem (never a traceback, never "valid").

The PKI is the test one of test_jpki_fixtures; OCSP is our responder (protocols.jpki.ocsp)
behind an httpx MockTransport, altered where a case needs a hostile or broken responder."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import httpx
import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from test_jpki_cms import CONTENT, se_signer
from test_jpki_fixtures import CHIYODA, NOW, SAPPORO, pki

from protocols.certs import subject_key_id
from protocols.jpki import KeyType, Purpose
from protocols.jpki.cms import build_detached_signature
from protocols.jpki.crl import Revocation, RevocationReason, build_crl
from protocols.jpki.ocsp import (
    CertId,
    Good,
    OcspResponder,
    ResponseStatus,
    Revoked,
    Unknown,
    build_response,
    error_response,
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
    """A responder: ``answer(request DER) -> response DER``, an exception to raise, or an
    HTTP status to answer with."""
    def handle(request: httpx.Request) -> httpx.Response:
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, int):
            return httpx.Response(answer, content=b"")
        return httpx.Response(200, content=answer(request.content))
    return httpx.Client(transport=httpx.MockTransport(handle))


def _ours(status, now=NOW):
    return lambda req: respond(req, lambda cid: status, _responder(), now)


def _rebuilt(cert_id=lambda cid: cid, nonce=lambda n: n, status=Good(), responder=None):
    """Our responder's signed answer to the request, with its CertID, nonce or signer replaced."""
    def answer(req: bytes) -> bytes:
        r = parse_request(req)
        return build_response(responder=responder or _responder(), answers=[(cert_id(r.cert_ids[0]), status)],
                              now=NOW, nonce=nonce(r.nonce))
    return answer


def _crl(revocations=(), this=NOW - timedelta(hours=1), nxt=NOW + timedelta(hours=5), partition=CHIYODA,
         issuer=Purpose.SIGN) -> bytes:
    return build_crl(profile=P.profile, purpose=issuer, issuer=P.roots[issuer],
                     issuer_key=P.root_keys[issuer], partition=partition, revocations=revocations,
                     crl_number=3, this_update=this, next_update=nxt).public_bytes(Encoding.DER)


def _failed(result) -> dict[str, str]:
    assert result["valid"] is False, result
    return {c["name"]: c["reason"] for c in result["checks"] if not c["passed"]}


def test_a_good_signature_is_valid():
    result = verify(CONTENT, SIG, roots=ROOTS, client=_client(_ours(Good())), at=NOW)
    assert result["valid"], result
    assert [(c["name"], c["code"]) for c in result["checks"]] == [
        ("signature", "ok"), ("chain", "ok"), ("policy", "ok"), ("key_usage", "ok"), ("validity", "ok"),
        ("revocation", "good")]
    assert all("revocation_reason" not in c for c in result["checks"])
    crl = verify(CONTENT, SIG, roots=ROOTS, revocation="crl", crl=_crl(), at=NOW)
    assert crl["valid"] and crl["checks"][-1]["code"] == "good", crl


@pytest.mark.parametrize("reason", REASONS)
@pytest.mark.parametrize("source", ["ocsp", "crl"])
def test_each_reason_is_named_and_a_hold_is_not_called_a_revocation(reason, source):
    """The four J-LIS reasons (and keyCompromise) say "revoked (<reason>)"; certificateHold, the
    one that a release lifts, says "on hold", through OCSP and the CRL alike."""
    when = NOW - timedelta(hours=2)
    if source == "ocsp":
        result = verify(CONTENT, SIG, roots=ROOTS, at=NOW,
                        client=_client(_ours(Revoked(when, RevocationReason.parse(reason)))))
    else:
        result = verify(CONTENT, SIG, roots=ROOTS, at=NOW, revocation="crl",
                        crl=_crl([Revocation(SERIAL, when, RevocationReason.parse(reason))]))
    said = _failed(result)
    assert list(said) == ["revocation"], said
    check = result["checks"][-1]
    assert (check["code"], check["revocation_reason"]) == ("on_hold" if reason == "certificateHold" else "revoked",
                                                           reason), check
    if reason == "certificateHold":
        assert said["revocation"].startswith("on hold (certificateHold:"), said
        assert "revoked" not in said["revocation"], said
    else:
        assert said["revocation"].startswith(f"revoked ({reason}) at "), said


# (case, revocation mode, verify() keywords, the failed check, what its reason must say, its code)
DEAD = httpx.ConnectError("connection refused")
ALTERED = CONTENT + b"!"
CASES = [
    ("unknown to the responder", "ocsp", dict(client=_client(_ours(Unknown()))), "revocation", "OCSP status unknown",
     "unknown"),
    ("expired", "none", dict(at=CERT.not_valid_after_utc + timedelta(days=1)), "validity", "expired at", "expired"),
    ("not yet valid", "none", dict(at=CERT.not_valid_before_utc - timedelta(days=1)), "validity",
     "not valid before", "not_yet_valid"),
    ("another PKI's root", "none", dict(roots=[pki(KeyType.RSA_2048).roots[Purpose.SIGN]]), "chain",
     "none of the 1 trusted root(s)", "untrusted_root"),
    ("the signing root missing", "none", dict(roots=[P.roots[Purpose.AUTH]]), "chain",
     f"key id {subject_key_id(P.roots[Purpose.SIGN]).hex()}", "untrusted_root"),
    ("signing cert for a login", "none", dict(slot="auth"), "policy",
     "a signing (署名用) certificate where a user-authentication (利用者証明用) certificate is required",
     "wrong_purpose"),
    ("responder unreachable", "ocsp", dict(client=_client(DEAD)), "revocation",
     "OCSP responder http://jpki.test.invalid/ocsp unreachable", "unavailable"),
    ("distribution point unreachable", "crl", dict(client=_client(DEAD)), "revocation",
     "CRL at http://jpki.test.invalid/crl/sign/131016.crl unreachable", "unavailable"),
    ("both unreachable", "auto", dict(client=_client(DEAD)), "revocation", "OCSP gave no answer", "unavailable"),
    ("responder tryLater", "ocsp", dict(client=_client(lambda req: error_response(ResponseStatus.TRY_LATER))),
     "revocation", "OCSP responder said TRY_LATER", "unavailable"),
    ("stale CRL", "crl", dict(crl=_crl(this=NOW - timedelta(days=2), nxt=NOW - timedelta(days=1))),
     "revocation", "CRL is not current: nextUpdate", "unavailable"),
    ("CRL of another partition", "crl", dict(crl=_crl(partition=SAPPORO)), "revocation", "different CRL scope",
     "unavailable"),
    ("stale OCSP answer", "ocsp", dict(client=_client(_ours(Good(), now=NOW - timedelta(hours=1)))), "revocation",
     "OCSP response is not current: nextUpdate", "unavailable"),
    ("OCSP answer about another serial", "ocsp",
     dict(client=_client(_rebuilt(cert_id=lambda cid: dataclasses.replace(cid, serial=cid.serial + 1)))),
     "revocation", "OCSP response is about another certificate", "unavailable"),
    ("OCSP answer with another nonce", "ocsp", dict(client=_client(_rebuilt(nonce=lambda n: b"\x01" * 16))),
     "revocation", "OCSP nonce does not match the request", "unavailable"),
    ("OCSP answer with no nonce", "ocsp", dict(client=_client(_rebuilt(nonce=lambda n: None))),
     "revocation", "OCSP response carries no nonce", "unavailable"),
    # the codes' own cases (the reasons above are pinned as they were)
    ("content altered", "none", dict(content=ALTERED), "signature", "messageDigest does not match the content",
     "bad_signature"),
    ("not a signature", "none", dict(signature=b"\x30\x03\x02\x01\x00"), "signature", "does not decode",
     "bad_signature"),
    ("responder answered HTTP 500", "ocsp", dict(client=_client(500)), "revocation",
     "OCSP responder answered HTTP 500", "unavailable"),
    ("responder answered garbage", "ocsp", dict(client=_client(lambda req: b"garbage")), "revocation",
     "OCSP response does not parse", "unavailable"),
    ("OCSP answer signed by another root's responder", "ocsp",
     dict(client=_client(_rebuilt(responder=_responder(Purpose.AUTH)))), "revocation",
     "OCSP response is not signed by the root", "unavailable"),
    ("CRL of another root", "crl", dict(crl=_crl(issuer=Purpose.AUTH)), "revocation",
     "CRL is not signed by the certificate's root", "unavailable"),
    ("CRL that does not parse", "crl", dict(crl=b"not a CRL"), "revocation", "CRL does not parse", "unavailable"),
    ("no trusted root to ask about", "ocsp", dict(roots=[P.roots[Purpose.AUTH]]), "revocation",
     "no trusted root to ask about", "failed"),
    ("an unknown revocation mode", "sometimes", {}, "revocation", "unknown revocation mode", "failed"),
    ("revoked, the CRL asked after OCSP gave no answer", "auto",
     dict(client=_client(DEAD), crl=_crl([Revocation(SERIAL, NOW - timedelta(hours=1),
                                                     RevocationReason.SUPERSEDED)])),
     "revocation", "CRL fallback: revoked (superseded)", "revoked"),
    ("on hold on the CRL", "crl",
     dict(crl=_crl([Revocation(SERIAL, NOW - timedelta(hours=1), RevocationReason.CERTIFICATE_HOLD)])),
     "revocation", "on hold (certificateHold", "on_hold"),
]


def _case(mode: str, kwargs: dict) -> dict:
    """verify()'s verdict on a case of :data:`CASES`."""
    args = {"roots": ROOTS, "at": NOW, "revocation": mode, **kwargs}
    return verify(args.pop("content", CONTENT), args.pop("signature", SIG), **args)


@pytest.mark.parametrize(("mode", "kwargs", "check", "said", "code"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_each_failure_is_its_own_named_check_with_its_code(mode, kwargs, check, said, code):
    result = _case(mode, kwargs)
    failed = _failed(result)
    assert check in failed and said in failed[check], failed
    codes = {c["name"]: c["code"] for c in result["checks"]}
    assert codes[check] == code, result
    # a check that passed says ok (good, for revocation): never a failure's code
    assert all(c["code"] in ("ok", "good") for c in result["checks"] if c["passed"]), result


def test_a_user_authentication_certificate_on_a_document():
    _cert, sig = _signed(Purpose.AUTH, 701)
    failed = _failed(verify(CONTENT, sig, roots=ROOTS, at=NOW, revocation="none"))
    assert failed["policy"] == ("a user-authentication (利用者証明用) certificate where a signing (署名用) "
                                "certificate is required (a document is signed with the signing certificate)")
    assert "nonRepudiation" in failed["key_usage"]
    codes = {c["name"]: c["code"] for c in verify(CONTENT, sig, roots=ROOTS, at=NOW, revocation="none")["checks"]}
    assert (codes["policy"], codes["key_usage"]) == ("wrong_purpose", "wrong_purpose")


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


def test_a_claimed_signing_time_before_the_revocation_is_said_but_proves_nothing():
    """No time-stamp: the CMS signingTime is the signer's own claim; the verdict stays
    invalid, and says why a signature made before the revocation is still refused."""
    _cert, sig = _signed(serial=SERIAL, signing_time=NOW - timedelta(days=3))
    revoked = _ours(Revoked(NOW - timedelta(days=1), RevocationReason.AFFILIATION_CHANGED))
    failed = _failed(verify(CONTENT, sig, roots=ROOTS, at=NOW, client=_client(revoked)))
    assert failed["revocation"].startswith("revoked (affiliationChanged) at "), failed
    assert "claims signingTime" in failed["revocation"] and "only a signature time-stamp proves" in failed["revocation"]
    # signed after the revocation: nothing to add
    _cert, late = _signed(serial=SERIAL, signing_time=NOW)
    failed = _failed(verify(CONTENT, late, roots=ROOTS, at=NOW, client=_client(revoked)))
    assert "claims signingTime" not in failed["revocation"], failed
