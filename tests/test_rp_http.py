"""The JPKI relying party joins the reader service (issue 6 item 4), end to end over HTTP: a
phone provisioned by ``mcred.provision`` signs with its JPKI applet (password verified in
the SE); the relying party, ``POST /rp/jpki/verify`` of the stand-alone reader (uvicorn) and
of the issuer service's ``/reader`` mount (scope ``reader``), checks the signature, the
chain and asks the issuer's live OCSP responder (another uvicorn at ``MCRED_PUBLIC_URL``):
valid, then revoked with the recorded reason after ``mcred revoke``. Bad bodies are
problem+json 4xx, never 5xx (hypothesis over the route)."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import os
import re
from collections.abc import Iterator

import httpx
import pytest
from conftest import person
from cryptography.hazmat.primitives import serialization
from documented import assert_documented
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_present_http import Server, free_port, installation_env
from typer.testing import CliRunner

import wallet_sim
from issuer.api.auth import create_token
from mcred.cli.main import app as cli
from mcred.context import Context
from mcred.jpki_flow import jpki_issuer, sign_file
from mcred.present import reader_app, reader_pipeline
from mcred.provision import parse_holder, provision
from mcred.service import create_app
from reader.http import ReaderService
from reader.relying_party import RelyingPartyService
from reader.session import DEFAULT_REQUEST
from reader.trust import TrustStore

HOLDER = {"family_name": "鈴木", "given_name": "花子", "family_name_kana": "すずき",
          "given_name_kana": "はなこ", "birth_date": "1988-02-29", "sex": 2,
          "address": "東京都千代田区霞が関2-1-2", "prefecture": "東京都", "municipality": "千代田区"}
PASSWORD = "ABCD1234"
CONTENT = "転入届 2026-12-03\n".encode()
#: the responder's "revoked" (and nothing from a CRL), with the note on the signature's
#: claimed signingTime that a signature made before the revocation gets
_OCSP_REVOKED = re.compile(r"revoked \(affiliationChanged\) at \S+ \(OCSP\)"
                           r"(; the signature claims signingTime \S+, before that, but only a signature "
                           r"time-stamp proves when it was made \(mcred jpki sign --timestamp\))?")


def rp_app(rp: RelyingPartyService) -> object:
    """A reader service (no IACA) with the JPKI relying party ``rp``, as `mcred reader serve
    --jpki-roots` runs it."""
    service = ReaderService(reader_pipeline(trust=TrustStore()), [DEFAULT_REQUEST])
    return reader_app(service, rp)


@contextlib.contextmanager
def issuer_and_relying_party(ctx: Context, issuer_port: int, roots) -> Iterator[tuple[str, str, RelyingPartyService, object]]:
    """`mcred serve` of ``ctx`` on ``issuer_port`` and a reader service whose relying party
    trusts ``roots`` on a free port, while inside: yields (issuer URL, reader URL, the
    relying party, the issuer's app)."""
    rp = RelyingPartyService(roots)
    issuer_app = create_app(ctx, job_workers=1)
    try:
        with Server(issuer_app, issuer_port) as iss, Server(rp_app(rp), free_port()) as rs:
            yield iss.url, rs.url, rp, issuer_app
    finally:
        issuer_app.state.jobs.shutdown()


def run_cli(*args: str, code: int = 0) -> str:
    """``mcred ARGS`` in-process, asserting its exit ``code``; a failure's output with rich's
    frame and line breaks folded to single spaces (a message may be cut across lines)."""
    out = CliRunner().invoke(cli, list(args))
    assert out.exit_code == code, out.output
    return out.output if code == 0 else re.sub(r"[\s│╭╮╰╯─]+", " ", out.output)


@contextlib.contextmanager
def served_installation(tmp_path_factory, holder: dict, password: str, key_types: tuple[str, ...] = ("p384",),
                        slots: tuple[str, ...] = ("sign",)) -> Iterator[dict]:
    """An installation with one phone per key type (PIN 1234, signing ``password``, also in
    ``files/pw``), the first provisioned for ``holder``, each other one for a person of their
    own (``conftest.person(holder)``: one person holds the credentials on one phone),
    `mcred serve` on its public URL and a reader whose relying party trusts the JPKI roots of
    ``slots``, while inside: yields ``ctx``, ``home``, ``files``, ``phones`` and ``holders``
    (each phone's holder record, by key type), ``roots``, ``issuer_url``, ``reader_url``,
    ``rp`` and ``issuer_app``."""
    home = tmp_path_factory.mktemp("home")
    files = tmp_path_factory.mktemp("files")
    issuer_port = free_port()
    with installation_env(home, issuer_port):
        ctx = Context.open(home)
        phones, holders = {}, {}
        for key_type in key_types:
            phones[key_type] = wallet_sim.create_phone(home)
            holders[key_type] = person(holder) if holders else holder
            provision(ctx, phones[key_type], parse_holder(holders[key_type]), key_type=key_type, mdoc_batch=1,
                      pin="1234", password=password)
        issuer = jpki_issuer(ctx)
        roots = [root for slot in slots for root in issuer.roots(slot)]
        (files / "pw").write_text(password + "\n")
        with issuer_and_relying_party(ctx, issuer_port, roots) as (issuer_url, reader_url, rp, issuer_app):
            yield {"ctx": ctx, "home": home, "files": files, "phones": phones, "holders": holders, "roots": roots,
                   "issuer_url": issuer_url, "reader_url": reader_url, "rp": rp, "issuer_app": issuer_app}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with served_installation(tmp_path_factory, HOLDER, PASSWORD, slots=("sign", "auth")) as w:
        phone = w["phones"]["p384"]
        doc, sig = w["files"] / "todoke.txt", w["files"] / "todoke.txt.p7s"
        doc.write_bytes(CONTENT)
        cms, _cert = sign_file(phone, "sign", PASSWORD.encode(), CONTENT, w["home"])
        sig.write_bytes(cms)
        token = create_token(w["ctx"].sessions, ["reader"], "rp-test")[1]
        yield {"ctx": w["ctx"], "phone": phone, "doc": doc, "sig": sig, "cms": cms,
               "reader_url": w["reader_url"], "issuer_url": w["issuer_url"], "token": token,
               "roots": w["roots"], "rp": w["rp"], "issuer_app": w["issuer_app"]}


@pytest.fixture(autouse=True)
def _answers_checked(request, monkeypatch) -> Iterator[list[str]]:
    """Every answer the tests get, refusals too, held to the OpenAPI document of the app that
    answered (tests/documented.py): the stand-alone reader's (its JPKI relying party), and
    `mcred serve`'s, its ``/reader`` mount and the OCSP responder and CRLs the relying
    parties ask (in the servers' threads: a failure there is also listed, and named here)."""
    from documented import check_every_served_answer, check_every_test_client

    seen = check_every_test_client(monkeypatch)
    failures: list[str] = []
    if "world" in request.fixturenames:
        world = request.getfixturevalue("world")
        seen = check_every_served_answer(monkeypatch, {world["reader_url"]: rp_app(world["rp"]),
                                                       world["issuer_url"]: world["issuer_app"]}, failures)
    yield seen
    assert not failures, failures


def _cli(*args: str, code: int) -> dict:
    out = CliRunner().invoke(cli, list(args))
    assert out.exit_code == code, out.output
    return json.loads(out.output)


def _checks(result: dict) -> dict[str, dict]:
    return {c["name"]: c for c in result["checks"]}


def _body(content: bytes, signature: bytes, **extra) -> dict:
    return {"content": base64.b64encode(content).decode(),
            "signature": base64.b64encode(signature).decode(), **extra}


def test_phone_signature_valid_then_revoked_with_its_reason(world):
    from issuer.revocation import revoke

    args = ("jpki", "verify", str(world["doc"]), "--signature", str(world["sig"]),
            "--rp", world["reader_url"], "--json")
    result = _cli(*args, code=0)
    assert result["valid"]
    c = _checks(result)
    assert list(c) == ["signature", "chain", "policy", "key_usage", "validity", "revocation"]
    assert c["revocation"]["reason"].startswith("OCSP good (" + world["issuer_url"] + "/ocsp")
    assert (c["revocation"]["revoked_at"], c["revocation"]["revocation_reason"]) == (None, None)
    # auto: the responder answers, so OCSP decides and no CRL is fetched
    fetches = world["rp"].crl_cache.fetches
    auto = _cli(*args, "--revocation", "auto", code=0)
    assert _checks(auto)["revocation"]["reason"].startswith("OCSP good (")
    assert world["rp"].crl_cache.fetches == fetches
    (doc,) = result["documents"]
    assert doc["purpose"] == "sign" and doc["basic_four"]["name"] == "鈴木\u3000花子"
    # the verdict with its signer and basic four is the JpkiVerdict the document declares
    r = httpx.post(world["reader_url"] + "/rp/jpki/verify", json=_body(CONTENT, world["cms"]))
    assert r.json()["documents"][0]["basic_four"]
    assert_documented(rp_app(world["rp"]), "POST", "/rp/jpki/verify", r)

    # the same route in the issuer service, under /reader with a reader token; OCSP asked of
    # the very process that serves the route (no deadlock: the work runs in the thread pool)
    mounted = world["issuer_url"] + "/reader"
    assert _cli(*args[:-3], "--rp", mounted, "--token", world["token"], "--json",
                code=0)["valid"]
    r = httpx.post(mounted + "/rp/jpki/verify", json=_body(CONTENT, world["cms"]))
    assert r.status_code == 401 and r.headers["content-type"].startswith("application/problem+json")

    # a user-authentication certificate is required: the signing one is refused
    r = httpx.post(world["reader_url"] + "/rp/jpki/verify",
                   json=_body(CONTENT, world["cms"], slot="auth"))
    assert r.status_code == 200 and not r.json()["valid"]
    assert not _checks(r.json())["policy"]["passed"]

    revoked_at = dt.datetime.now(dt.UTC).replace(microsecond=0)
    revoke(world["ctx"].sessions, world["phone"], "affiliationChanged", "sign", now=revoked_at)
    result = _cli(*args, code=1)
    c = _checks(result)
    assert [n for n, v in c.items() if not v["passed"]] == ["revocation"]
    assert _OCSP_REVOKED.fullmatch(c["revocation"]["reason"]), c["revocation"]
    # when and why, as the issuer recorded them, in the service's answer (documented: the
    # fixture holds every answer to the reader's OpenAPI document)
    said = (revoked_at.isoformat(), "affiliationChanged")
    assert (c["revocation"]["revoked_at"], c["revocation"]["revocation_reason"]) == said, c["revocation"]
    # auto: a verified "revoked" from the responder is final, never traded for the CRL
    c = _checks(_cli(*args, "--revocation", "auto", code=1))
    assert _OCSP_REVOKED.fullmatch(c["revocation"]["reason"]), c["revocation"]
    # the CRL says the same (fetched from the certificate's distribution point), and the
    # service keeps the fetched CRL: a second request does not fetch it again
    fetches = world["rp"].crl_cache.fetches
    for _ in range(2):
        r = httpx.post(world["reader_url"] + "/rp/jpki/verify",
                       json=_body(CONTENT, world["cms"], revocation="crl"))
        c = _checks(r.json())
        assert not r.json()["valid"] and not c["revocation"]["passed"]
        assert "affiliationChanged" in c["revocation"]["reason"]
        assert f"(CRL {world['issuer_url']}/" in c["revocation"]["reason"]
        assert (c["revocation"]["revoked_at"], c["revocation"]["revocation_reason"]) == said, c["revocation"]
    assert world["rp"].crl_cache.fetches == fetches + 1
    # and through the issuer service's mount
    result = _cli(*args[:-3], "--rp", mounted, "--token", world["token"], "--json", code=1)
    assert "affiliationChanged" in _checks(result)["revocation"]["reason"]


def test_altered_content_and_garbage_are_verdicts_not_errors(world):
    url = world["reader_url"] + "/rp/jpki/verify"
    r = httpx.post(url, json=_body(CONTENT + b"!", world["cms"]))
    assert r.status_code == 200 and not r.json()["valid"]
    assert _checks(r.json())["signature"]["passed"] is False
    r = httpx.post(url, json=_body(CONTENT, b"\x30\x03\x02\x01\x00"))
    assert r.status_code == 200 and r.json() == {
        "valid": False, "checks": [r.json()["checks"][0]], "documents": []}
    r = httpx.post(url, json=_body(CONTENT, b"sig", certificate="bm90IGEgY2VydA=="))
    assert r.status_code == 200 and not r.json()["valid"]


@pytest.mark.parametrize("body", [
    {"content": "", "signature": "***"},
    {"content": "", "signature": "QQ", "slot": "both"},
    {"content": "", "signature": "QQ==", "revocation": "none"},
    {"content": "", "signature": "QQ==", "extra": 1},
    {"signature": "QQ=="},
    [],
])
def test_bad_requests_are_problem_json_422(world, body):
    r = httpx.post(world["reader_url"] + "/rp/jpki/verify", json=body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["status"] == 422


def test_cli_rp_refuses_local_options_and_reports_an_unreachable_service(world, tmp_path):
    base = ("jpki", "verify", str(world["doc"]), "--signature", str(world["sig"]))
    out = CliRunner().invoke(cli, [*base, "--rp", world["reader_url"], "--crl", str(world["doc"])])
    assert out.exit_code == 2 and "--rp" in out.output
    result = _cli(*base, "--rp", f"http://127.0.0.1:{free_port()}", "--json", code=2)
    assert result["valid"] is False and "ConnectError" in result["error"]
    result = _cli(*base, "--rp", world["issuer_url"] + "/reader", "--json", code=2)
    assert "HTTP 401" in result["error"]
    # a service without the relying party (the issuer's root here): told where one is
    result = _cli(*base, "--rp", world["issuer_url"], "--json", code=2)
    assert "no relying party at" in result["error"] and "--jpki-roots" in result["error"]
    out = CliRunner().invoke(cli, [*base, "--revocation", "OCSP"])
    assert out.exit_code == 2 and "--revocation" in out.output


_b64 = st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode())
_field = st.one_of(_b64, st.text(max_size=40), st.integers(), st.none(), st.booleans())


@settings(max_examples=150, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(body=st.one_of(
    st.fixed_dictionaries({"content": _field, "signature": _field},
                          optional={"certificate": _field, "slot": _field,
                                    "revocation": _field}),
    st.dictionaries(st.text(max_size=12), _field, max_size=4),
    st.binary(max_size=64)))
def test_no_body_makes_the_relying_party_fail(body):
    r = _post_any(_rp_client(), "/rp/jpki/verify", body)
    if _a_verdict(r):
        assert r.json()["valid"] is False


_CLIENT: list[TestClient] = []


def _rp_client() -> TestClient:
    """One stand-alone relying party for the hypothesis tests (no root: nothing is valid)."""
    if not _CLIENT:
        _CLIENT.append(TestClient(rp_app(RelyingPartyService([])), raise_server_exceptions=False))
    return _CLIENT[0]


def _post_any(client: TestClient, path: str, body) -> object:  # noqa: ANN001 - bytes or JSON
    if isinstance(body, bytes):
        return client.post(path, content=body, headers={"Content-Type": "application/json"})
    return client.post(path, json=body)


def _a_verdict(r) -> bool:  # noqa: ANN001
    """Never a 5xx; a 4xx is an RFC 9457 problem. True when the answer is a verdict (200)."""
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        assert r.headers["content-type"].startswith("application/problem+json")
        assert {"type", "title", "status", "detail"} <= r.json().keys()
        return False
    return True
_hex32 = st.text("0123456789abcdef", min_size=32, max_size=32)


@settings(max_examples=150, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(body=st.one_of(
    st.fixed_dictionaries({"challenge_id": st.one_of(_hex32, _field), "signature": _field,
                           "certificate": _field}, optional={"revocation": _field}),
    st.dictionaries(st.text(max_size=12), _field, max_size=4),
    st.binary(max_size=64)), issue=st.booleans())
def test_no_answer_makes_the_authentication_fail(body, issue):
    """Random answers to a challenge (of a real one when ``issue``): a verdict that is not
    valid, or a 422 problem, never a 5xx."""
    client = _rp_client()
    if issue and isinstance(body, dict) and "challenge_id" in body:
        body = {**body, "challenge_id": client.post("/rp/jpki/challenges").json()["challenge_id"]}
    r = _post_any(client, "/rp/jpki/authentications", body)
    if _a_verdict(r):
        assert r.json()["valid"] is False and r.json()["checks"][0]["name"] == "challenge"


def test_mdoc_presented_to_the_issuer_services_reader_with_a_token(world, tmp_path, monkeypatch):
    """`mcred present --reader .../reader --token T`: the reader mounted in `mcred serve` runs
    the checks of `mcred reader serve` online, the IACA CRL (ds_revocation) included. A
    running reader keeps the CRL it verified until its nextUpdate (RFC 5280); a verifier
    that fetches it anew sees a DS revoked since."""
    from mcred.provision import mdoc_service

    monkeypatch.setenv("MCRED_HOME", str(world["ctx"].home))
    rules, saved, iaca = tmp_path / "consent.json", tmp_path / "p.cbor", tmp_path / "iaca.pem"
    rules.write_text(json.dumps({"documents": {"*": {"*": "*"}}}))
    base = ["present", "--phone", world["phone"], "--reader", world["issuer_url"] + "/reader",
            "--consent", str(rules), "--json"]
    result = _cli(*base, code=2)  # no token: the reader scope is required
    assert "401" in result["error"]
    result = _cli(*base, "--token", world["token"], "--save", str(saved), code=0)
    checks = _checks(result)
    assert result["valid"] and checks["revocation_status"]["passed"], result
    assert "not on the IACA CRL" in checks["ds_revocation"]["reason"]
    assert "next update" in checks["ds_revocation"]["reason"]

    svc = mdoc_service(world["ctx"])
    iaca.write_bytes(svc.iaca_certificate().public_bytes(serialization.Encoding.PEM))
    (ds,) = [s for s in svc.signers() if s.active]
    svc.revoke_signer(ds.serial, "keyCompromise", actor="test")
    result = _cli("verify", str(saved), "--trust", str(iaca), "--ds-crl", "--json", code=1)
    failed = {c["name"]: c["reason"] for c in result["checks"] if not c["passed"]}
    assert list(failed) == ["ds_revocation"], failed
    assert "revoked (keyCompromise)" in failed["ds_revocation"]


def test_user_authentication_by_challenge(world, tmp_path):
    """利用者証明 (specs/presentation.md section 2, "User authentication"): the relying party hands out a challenge,
    the phone signs it with its user-authentication key (PIN verified in the SE), the
    relying party takes it back once and checks signature, chain, policy, validity and OCSP.
    A replayed answer, an answer to another challenge and an unknown challenge are refused
    by the named check; so is the holder once the certificate is revoked. Over the
    stand-alone reader (challenges in memory) and the issuer service's mount (in its
    database)."""
    from issuer.revocation import revoke
    from mcred.jpki_flow import sign_challenge

    pin = tmp_path / "pin"
    pin.write_text("1234\n")
    args = ("jpki", "auth", "--phone", world["phone"], "--pin-file", str(pin), "--json")
    local = _cli(*args, code=0)  # a relying party in this process, OCSP asked of the issuer
    assert _checks(local)["revocation"]["reason"].startswith("OCSP good (")
    result = _cli(*args, "--rp", world["reader_url"], code=0)
    assert list(_checks(result)) == ["challenge", "signature", "chain", "policy", "key_usage",
                                     "validity", "revocation"]
    assert result["documents"][0]["purpose"] == "auth"
    assert _checks(result)["revocation"]["reason"].startswith("OCSP good (")
    mounted = world["issuer_url"] + "/reader"
    assert _cli(*args, "--rp", mounted, "--token", world["token"], code=0)["valid"]
    head = {"Authorization": f"Bearer {world['token']}"}
    assert httpx.post(mounted + "/rp/jpki/challenges").status_code == 401

    transmit = wallet_sim.open_secure_element(world["phone"], world["ctx"].home).transmit
    for base, headers in ((world["reader_url"], {}), (mounted, head)):
        first, second = (httpx.post(base + "/rp/jpki/challenges", headers=headers) for _ in range(2))
        assert first.status_code == 201, first.text
        a, b = first.json(), second.json()
        assert a["challenge_id"] != b["challenge_id"] and len(base64.b64decode(a["nonce"])) == 32
        sig, cert = sign_challenge(transmit, b"1234", base64.b64decode(a["nonce"]))
        answer = {"challenge_id": a["challenge_id"], "signature": base64.b64encode(sig).decode(),
                  "certificate": base64.b64encode(cert).decode()}
        r = httpx.post(base + "/rp/jpki/authentications", json=answer, headers=headers)
        assert r.status_code == 200 and r.json()["valid"], r.json()
        assert_documented(rp_app(world["rp"]), "POST", "/rp/jpki/authentications", r)
        replay = httpx.post(base + "/rp/jpki/authentications", json=answer, headers=headers).json()
        assert not replay["valid"] and _checks(replay)["challenge"]["reason"].endswith("(a replay)")
        assert list(_checks(replay)) == ["challenge"]
        # the signature over a's nonce does not answer b
        crossed = httpx.post(base + "/rp/jpki/authentications", headers=headers,
                             json={**answer, "challenge_id": b["challenge_id"]}).json()
        c = _checks(crossed)
        assert c["challenge"]["passed"] and not c["signature"]["passed"] and not crossed["valid"]
        unknown = httpx.post(base + "/rp/jpki/authentications", headers=headers,
                             json={**answer, "challenge_id": "0" * 32}).json()
        assert _checks(unknown)["challenge"]["reason"] == "unknown or expired challenge"
        for bad in ({**answer, "challenge_id": "x"}, {k: v for k, v in answer.items() if k != "certificate"},
                    {**answer, "signature": "***"}, {**answer, "revocation": "none"}):
            r = httpx.post(base + "/rp/jpki/authentications", json=bad, headers=headers)
            assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")

    # a wrong PIN is the SE's refusal, before any relying party sees a signature
    wrong = tmp_path / "wrong"
    wrong.write_text("9999")
    out = CliRunner().invoke(cli, ["jpki", "auth", "--phone", world["phone"], "--pin-file", str(wrong),
                                   "--rp", world["reader_url"]])
    assert out.exit_code == 1 and "wrong user-auth PIN, 2 tries left" in out.output, out.output
    said = _cli("jpki", "auth", "--phone", world["phone"], "--pin-file", str(wrong), "--rp", world["reader_url"],
                "--json", code=1)  # with --json, JSON too
    assert said["valid"] is False and "wrong user-auth PIN, 1 try left" in said["error"]
    assert _cli(*args, "--rp", world["reader_url"], code=0)["valid"]  # the right one resets it

    revoke(world["ctx"].sessions, world["phone"], "keyCompromise", "auth")
    for where in (("--rp", world["reader_url"]), ()):
        result = _cli(*args, *where, code=1)
        failed = {n: c["reason"] for n, c in _checks(result).items() if not c["passed"]}
        assert list(failed) == ["revocation"] and "keyCompromise" in failed["revocation"]
    # a service asked for no revocation is refused at the door; the local one may skip it
    out = CliRunner().invoke(cli, [*args, "--rp", world["reader_url"], "--revocation", "none"])
    assert out.exit_code == 2, out.output
    assert _cli(*args, "--revocation", "none", code=0)["valid"]


def test_the_issuers_revocation_answers_are_the_documented_ones_headers_included(world, _answers_checked):
    """What a relying party, a reader or a CDN fetches from `mcred serve` (OCSP by POST and by
    GET, a JPKI CRL, a status list and its identifier list, 200 and 304, the IACA's CRL and
    the roots) is answered in the media type the document names, with the caching headers
    the document declares required (``Cache-Control``; ``ETag``, ``Expires``,
    ``Last-Modified`` of a published token): the document declared none, so a client
    generated from it never learnt of the ETag to revalidate with nor of how long a copy is
    good. Every answer here is held to the document by ``_answers_checked``."""
    import sqlalchemy as sa
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.serialization import pkcs7
    from cryptography.x509 import ocsp

    from protocols import certs

    base = world["issuer_url"]
    (cert,) = [c for c in pkcs7.load_der_pkcs7_certificates(world["cms"]) if c.subject != c.issuer]
    (root,) = [r for r in world["roots"] if r.subject == cert.issuer]
    encoded = ""
    while "/" not in encoded:  # a path parameter with %2F in it, as RFC 6960 A.1 sends it
        request = ocsp.OCSPRequestBuilder().add_certificate(cert, root, hashes.SHA1()).add_extension(
            x509.OCSPNonce(os.urandom(16)), critical=False).build().public_bytes(serialization.Encoding.DER)
        encoded = base64.b64encode(request).decode()
    post = httpx.post(base + "/ocsp", content=request, headers={"Content-Type": "application/ocsp-request"})
    get = httpx.get(base + "/ocsp/" + encoded.replace("/", "%2F").replace("+", "%2B").replace("=", "%3D"))
    for r, cache in ((post, "no-store"), (get, "public, max-age=")):
        assert r.status_code == 200 and r.headers["content-type"] == "application/ocsp-response", r.text
        assert r.headers["cache-control"].startswith(cache)
        assert ocsp.load_der_ocsp_response(r.content).response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    crl = httpx.get(certs.crl_url(cert))
    assert crl.headers["content-type"] == "application/pkix-crl"
    assert x509.load_der_x509_crl(crl.content).issuer == root.subject
    with world["ctx"].engine.connect() as conn:
        list_id = conn.execute(sa.text("SELECT id FROM status_lists")).scalars().first()
    for path in (f"/status/{list_id}", f"/identifiers/{list_id}"):
        first = httpx.get(base + path)
        assert first.status_code == 200 and first.headers["etag"], first.text
        again = httpx.get(base + path, headers={"If-None-Match": first.headers["etag"]})
        assert again.status_code == 304 and again.headers["etag"] == first.headers["etag"]
        assert {"cache-control", "expires", "last-modified"} <= again.headers.keys()
    for path in ("/trust/iaca.crl", "/trust/iaca.pem", "/trust/jpki-sign-root.der", "/tsa/root.crl"):
        assert httpx.get(base + path).status_code == 200, path
    assert httpx.get(base + "/crl/sign/nope.txt").status_code == 404  # a refusal: a problem, declared

    doc = world["issuer_app"].openapi()["paths"]
    for path, status, names in (("/ocsp", "200", {"Cache-Control"}), ("/ocsp/{encoded}", "200", {"Cache-Control"}),
                                ("/crl/{slot}/{filename}", "200", {"Cache-Control"}),
                                ("/status/{list_id}", "200", {"ETag", "Cache-Control", "Expires", "Last-Modified"}),
                                ("/status/{list_id}", "304", {"ETag", "Cache-Control", "Expires", "Last-Modified"}),
                                ("/identifiers/{list_id}", "304", {"ETag", "Cache-Control", "Expires", "Last-Modified"}),
                                ("/trust/iaca.crl", "200", {"Cache-Control"}), ("/tsa/{filename}", "200", {"Cache-Control"})):
        op = doc[path]["post" if path == "/ocsp" else "get"]["responses"][status]
        assert {n for n, h in op.get("headers", {}).items() if h["required"]} == names, (path, status)
    assert {"POST /ocsp 200", "GET /ocsp/{encoded} 200", "GET /crl/{slot}/{filename} 200",
            "GET /status/{list_id} 200", "GET /status/{list_id} 304", "GET /identifiers/{list_id} 304",
            "GET /trust/iaca.crl 200", "GET /crl/{slot}/{filename} 404"} <= set(_answers_checked), _answers_checked
