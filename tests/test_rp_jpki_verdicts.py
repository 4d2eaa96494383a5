"""What a relying party is told, case by case: every way a JPKI signature can fail gets its own
failed check with a reason that names the problem (never a traceback, never "valid").

The PKI is the test one of test_jpki_fixtures; OCSP is our responder (protocols.jpki.ocsp)
behind an httpx MockTransport, altered where a case needs a hostile or broken responder."""

from __future__ import annotations

import base64
import dataclasses
import json
from datetime import UTC, timedelta

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
    # the revocation check says "not revoked" with null; no other check has the members
    assert [(c["revoked_at"], c["revocation_reason"]) for c in result["checks"] if c["name"] == "revocation"] == [
        (None, None)]
    assert all("revocation_reason" not in c and "revoked_at" not in c for c in result["checks"][:-1])
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
    # when, in ISO 8601 UTC: the OCSP answer's revocationTime, the CRL entry's revocationDate
    assert check["revoked_at"] == when.astimezone(UTC).isoformat() and check["revoked_at"].endswith("+00:00"), check
    # and the reason writes it the same way, whichever answer said it (the CRL's was
    # "2026-11-23 01:02:03+00:00", the OCSP answer's "2026-11-23T01:02:03+00:00")
    assert f"{'since' if reason == 'certificateHold' else 'at'} {check['revoked_at']}" in said["revocation"], said
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


def _codes(result: dict) -> list[tuple]:
    return [(c["name"], c["passed"], c["code"], c.get("revocation_reason"), c.get("revoked_at"))
            for c in result["checks"]]


#: the cases a relying-party service is asked (its revocation is ocsp, crl or auto)
HTTP_CASES = [c for c in CASES if c[1] != "sometimes"]


@pytest.mark.parametrize(("mode", "kwargs", "check", "code"), [(c[1], c[2], c[3], c[5]) for c in HTTP_CASES],
                         ids=[c[0] for c in HTTP_CASES])
def test_the_codes_over_http_are_the_local_ones(mode, kwargs, check, code):
    """``POST /rp/jpki/verify`` answers each case with the codes :func:`verify` (and so
    ``mcred jpki verify --json``) gives, in a verdict its OpenAPI document declares (the
    enum included). A case without revocation is asked with a good responder; a case's CRL
    is served at the certificate's distribution point."""
    from documented import assert_documented
    from fastapi.testclient import TestClient
    from test_rp_http import rp_app

    from reader.relying_party import RelyingPartyService

    args = dict(kwargs)
    case_client = args.pop("client", None) or _client(_ours(Good(), now=args.get("at", NOW)))
    crl = args.pop("crl", None)

    def handle(request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and crl is not None:
            return httpx.Response(200, content=crl)
        return case_client.send(request)

    client = httpx.Client(transport=httpx.MockTransport(handle))
    revocation = "ocsp" if mode == "none" else mode
    content, signature = args.pop("content", CONTENT), args.pop("signature", SIG)
    roots, at, slot = args.pop("roots", ROOTS), args.pop("at", NOW), args.pop("slot", "sign")
    assert not args, args
    local = verify(content, signature, roots=roots, at=at, slot=slot, revocation=revocation, client=client)
    assert {c["name"]: c["code"] for c in local["checks"]}[check] == code, local
    app = rp_app(RelyingPartyService(roots, client=client, clock=lambda: at))
    with TestClient(app) as http:
        r = http.post("/rp/jpki/verify", json={"content": base64.b64encode(content).decode(),
                                               "signature": base64.b64encode(signature).decode(),
                                               "slot": slot, "revocation": revocation})
    assert r.status_code == 200, r.text
    assert _codes(r.json()) == _codes(local)
    assert_documented(app, "POST", "/rp/jpki/verify", r)


#: the cases the command line can be given offline (the clock now, a CRL as a file)
CLI_CASES = [c for c in CASES if c[1] == "none" and "at" not in c[2]
             or c[1] == "crl" and "crl" in c[2]]


@pytest.mark.parametrize(("mode", "kwargs", "check", "code"), [(c[1], c[2], c[3], c[5]) for c in CLI_CASES],
                         ids=[c[0] for c in CLI_CASES])
def test_the_codes_of_mcred_jpki_verify_json(tmp_path, home, mode, kwargs, check, code):
    """``mcred jpki verify --json`` prints the codes, and still exits 1 for every invalid
    verdict, a revocation status that could not be had included."""
    from typer.testing import CliRunner

    from mcred.cli.main import app as cli

    args = dict(kwargs)
    files = {"doc": args.pop("content", CONTENT), "doc.p7s": args.pop("signature", SIG),
             "roots.pem": b"".join(r.public_bytes(Encoding.PEM) for r in args.pop("roots", ROOTS))}
    line = ["jpki", "verify", str(tmp_path / "doc"), "--signature", str(tmp_path / "doc.p7s"), "--roots",
            str(tmp_path / "roots.pem"), "--revocation", mode, "--slot", args.pop("slot", "sign"), "--json"]
    if "crl" in args:
        files["part.crl"] = args.pop("crl")
        line += ["--crl", str(tmp_path / "part.crl")]
    assert not args, args
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    out = CliRunner().invoke(cli, line)
    assert out.exit_code == 1, out.output
    printed = json.loads(out.output)
    assert {c["name"]: c["code"] for c in printed["checks"]}[check] == code, printed
    assert _codes(printed) == _codes(_case(mode, kwargs))


def test_the_documented_enum_is_the_vocabulary():
    """One source: the reader's OpenAPI document declares ``code`` as CHECK_CODES and
    ``revocation_reason`` as the RFC 5280 names; specs/revocation.md 5 has a row for each code."""
    from pathlib import Path

    from test_rp_http import rp_app

    from protocols.jpki.relying_party import CHECK_CODES, REVOCATION_CODES, REVOCATION_REASONS
    from reader.relying_party import RelyingPartyService

    schemas = rp_app(RelyingPartyService([])).openapi()["components"]["schemas"]
    check = schemas["JpkiCheck"]["properties"]
    assert check["code"]["enum"] == list(CHECK_CODES)
    # null on a revocation check that found no revocation
    assert check["revocation_reason"]["anyOf"] == [{"enum": list(REVOCATION_REASONS), "type": "string"},
                                                   {"type": "null"}]
    assert check["revoked_at"]["anyOf"] == [{"type": "string"}, {"type": "null"}]
    assert check["revoked_at"]["format"] == "date-time"
    # the invalidity date of a revocation (RFC 5280 5.3.2), null unless the answer gives one
    assert check["invalid_since"]["anyOf"] == [{"type": "string"}, {"type": "null"}]
    assert check["invalid_since"]["format"] == "date-time"
    assert "code" in schemas["JpkiCheck"]["required"]
    assert set(REVOCATION_CODES) <= set(CHECK_CODES)
    spec = (Path(__file__).parent.parent / "specs" / "revocation.md").read_text()
    table = spec[spec.index("**Codes**"):spec.index("### 5.1")]
    documented = {line.split("|")[1].strip().strip("`") for line in table.splitlines()
                  if line.startswith("| `")}
    assert documented == set(CHECK_CODES), documented ^ set(CHECK_CODES)


def test_every_revocation_check_is_built_with_its_code():
    """A ``revocation`` check is never left to the default code (``failed`` would hide an
    "ask again later" or a "revoked"): every ``Check("revocation", ...)`` in the JPKI
    relying party names its code (the helpers ``unavailable`` and ``revoked_check`` do)."""
    import ast
    from pathlib import Path

    root = Path(__file__).parent.parent
    missing = []
    for path in [*(root / "reader").glob("*.py"), root / "protocols" / "jpki" / "relying_party.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Check" and node.args
                    and isinstance(node.args[0], ast.Constant) and node.args[0].value == "revocation"
                    and not any(k.arg == "code" for k in node.keywords)):
                missing.append(f"{path.name}:{node.lineno}")
    assert not missing, missing


def test_a_revocation_after_the_time_stamp_passes_with_its_own_code():
    """revoked_after_signing: the check passes (the signature was made while the
    certificate was valid) and still says what the certificate is now."""
    from types import SimpleNamespace

    from protocols.jpki.relying_party import revoked_check
    from reader.relying_party import revoked_after

    when = NOW - timedelta(days=1)
    for reason in ("affiliationChanged", "certificateHold"):
        stamp = SimpleNamespace(gen_time=when - timedelta(days=1), latest=when - timedelta(days=1))
        check = revoked_after(revoked_check(reason, when, f"revoked ({reason}) at {when}"), stamp)
        assert (check.passed, check.code, check.revocation_reason) == (True, "revoked_after_signing", reason)
        assert (check.to_dict()["revoked_at"], check.to_dict()["revocation_reason"]) == (when.isoformat(), reason)
        before = revoked_after(revoked_check(reason, when, "revoked"), SimpleNamespace(gen_time=when, latest=when))
        assert (before.passed, before.code) == (False, "on_hold" if reason == "certificateHold" else "revoked")


def test_exit_unavailable_is_opt_in_and_only_for_ask_again_later(tmp_path, home):
    """``--exit-unavailable N``: exit N, not 1, when every failed check is ``unavailable``; any
    other failure beside it, a verified "revoked" or a valid verdict keep their exit status;
    without the option an unavailable answer exits 1 as it always did."""
    from typer.testing import CliRunner

    from mcred.cli.main import app as cli

    (tmp_path / "doc").write_bytes(CONTENT)
    (tmp_path / "roots.pem").write_bytes(b"".join(r.public_bytes(Encoding.PEM) for r in ROOTS))
    stale = _crl(this=NOW - timedelta(days=2), nxt=NOW - timedelta(days=1))
    revoked = _crl([Revocation(SERIAL, NOW - timedelta(hours=1), RevocationReason.KEY_COMPROMISE)])

    def status(crl: bytes, *extra: str, signature: bytes = SIG) -> int:
        (tmp_path / "doc.p7s").write_bytes(signature)
        (tmp_path / "part.crl").write_bytes(crl)
        return CliRunner().invoke(cli, ["jpki", "verify", str(tmp_path / "doc"), "--signature",
                                        str(tmp_path / "doc.p7s"), "--roots", str(tmp_path / "roots.pem"),
                                        "--revocation", "crl", "--crl", str(tmp_path / "part.crl"), *extra]).exit_code

    assert status(stale) == 1
    assert status(stale, "--exit-unavailable", "75") == 75
    assert status(stale, "--exit-unavailable", "75", "--json") == 75
    assert status(_crl(), "--exit-unavailable", "75") == 0
    assert status(revoked, "--exit-unavailable", "75") == 1
    _cert, auth_sig = _signed(Purpose.AUTH, 702)  # wrong_purpose beside the stale CRL
    assert status(stale, "--exit-unavailable", "75", signature=auth_sig) == 1
    assert status(stale, "--exit-unavailable", "2") == 2  # a usage error: 2 is "no verdict"


def test_the_text_output_shows_each_code_and_when_and_why_revoked(tmp_path, home):
    """``mcred jpki verify`` without --json shows each check's code as the JSON has it
    (``FAIL revocation [revoked]: ...``), and under a revoked certificate's check the JSON's
    ``revoked_at`` and ``revocation_reason`` in a line that fits 80 columns; a good one has no
    such line."""
    from typer.testing import CliRunner

    from mcred.cli.main import app as cli

    (tmp_path / "doc").write_bytes(CONTENT)
    (tmp_path / "doc.p7s").write_bytes(SIG)
    (tmp_path / "roots.pem").write_bytes(b"".join(r.public_bytes(Encoding.PEM) for r in ROOTS))
    when = NOW - timedelta(hours=3)

    def text(crl: bytes, code: int) -> list[str]:
        (tmp_path / "part.crl").write_bytes(crl)
        line = ["jpki", "verify", str(tmp_path / "doc"), "--signature", str(tmp_path / "doc.p7s"), "--roots",
                str(tmp_path / "roots.pem"), "--revocation", "crl", "--crl", str(tmp_path / "part.crl")]
        out = CliRunner().invoke(cli, line)
        assert out.exit_code == code, out.output
        printed = json.loads(CliRunner().invoke(cli, [*line, "--json"]).output)
        lines = out.output.splitlines()
        # every check's line carries its JSON code, in order
        assert [ln.split(":")[0] for ln in lines if not ln.startswith(" ")][:-1] == [
            f"{'ok  ' if c['passed'] else 'FAIL'} {c['name']} [{c['code']}]" for c in printed["checks"]], lines
        return lines

    good = text(_crl(), 0)
    assert "ok   revocation [good]: not on the CRL" in good and "ok   signature [ok]: CMS signature verifies" in good
    assert not any("revoked_at" in ln for ln in good), good
    for reason, code in (("cessationOfOperation", "revoked"), ("certificateHold", "on_hold")):
        lines = text(_crl([Revocation(SERIAL, when, RevocationReason.parse(reason))]), 1)
        at = next(i for i, ln in enumerate(lines) if ln.startswith(f"FAIL revocation [{code}]: "))
        assert lines[at + 1] == f"  revoked_at={when.isoformat()} revocation_reason={reason}", lines
        assert len(lines[at + 1]) <= 80 and lines[-1] == "INVALID"
