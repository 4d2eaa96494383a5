"""Online presentation (ISO/IEC TS 18013-7 Annex C, org-iso-mdoc over the Digital Credentials
API): the wallet answers a web page's request through the browser, the reader opens the
HPKE-sealed response and runs its pipeline over the request's SessionTranscript.

What a relying party on the web must be able to count on, each asserted by name: VALID with
exactly the consented items; a response relayed through another origin, or replayed into
another request, is refused by the ``session`` check; reader authentication reaches the
holder; the holder's rules can limit which origins are answered; over HTTP a malformed body
leaves the session open, a reader without an origin says so, and a session opened by one
reader process is finished by another on the same database."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_present_kit import DOCTYPE, NS, Clock, kit_pipeline, kit_world

import wallet_sim
from mcred.present import (
    PresentError,
    present_online_in_process,
    present_online_over_http,
    reader_app,
)
from protocols import cbor, cose
from protocols.mdoc import DeviceResponse, dcapi
from reader.errors import ReaderSessionError
from reader.http import ReaderService
from reader.online import OnlineReaderSession, check_origin, origin_of
from reader.session import RequestSpec
from wallet_sim.consent import InteractiveConsent, RulesConsent
from wallet_sim.wallet import OnlineRequestError, Wallet

#: every answer of the reader service, refusals too, held to its OpenAPI document (tests/documented.py)
pytestmark = pytest.mark.usefixtures("every_answer_checked")

ORIGIN = "https://shop.example"
REQUEST = RequestSpec(DOCTYPE, {NS: {"family_name": False, "age_over_20": False, "portrait": False}})


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return kit_world(tmp_path_factory, slots=(0, 1))


def wallet(world, consent=None, **kw) -> Wallet:
    se = wallet_sim.open_secure_element(world["phone"], world["home"])
    return Wallet(se.transmit, consent or RulesConsent.allow_all(), clock=Clock(), **kw)


def pipeline(world):
    return kit_pipeline(world["pki"])


def reader(world, **kw) -> OnlineReaderSession:
    return OnlineReaderSession([REQUEST], pipeline(world), ORIGIN, **kw)


def failed(result: dict) -> list[str]:
    return [c["name"] for c in result["checks"] if not c["passed"]]


def test_online_presentation_is_valid_with_exactly_the_consented_items(world):
    consent = RulesConsent.from_mapping({"documents": {DOCTYPE: {NS: ["family_name", "age_over_20"]}}})
    out = present_online_in_process(wallet(world, consent), reader(world))
    assert out.valid, failed(out.result)
    (doc,) = out.result["documents"]
    assert set(doc["elements"][NS]) == {"family_name", "age_over_20"}
    session = next(c for c in out.result["checks"] if c["name"] == "session")
    assert "HPKE" in session["reason"] and "Annex C" in session["reason"]
    # the portrait was refused: documentErrors name it, the device signed (no MAC online)
    response = DeviceResponse.decode(out.device_response)
    assert response.documents[0].errors == {NS: {"portrait": 0}}
    assert response.documents[0].device_signed.device_auth.device_signature is not None
    assert out.wallet_events[-1].detail == f"response sent to {ORIGIN}"


def test_a_wallet_set_to_mac_still_signs_online(world):
    out = present_online_in_process(wallet(world, device_auth="mac"), reader(world))
    assert out.valid, failed(out.result)


def test_a_response_relayed_through_another_origin_is_refused(world):
    """A site that relays the shop's request to its own visitors: the browser reports the
    relaying origin, the wallet binds it, and the shop's reader cannot even open the answer."""
    out = present_online_in_process(wallet(world), reader(world), origin="https://shop.example.evil.test")
    assert not out.valid
    assert failed(out.result) == ["session"]
    assert "does not open" in out.result["checks"][0]["reason"]
    assert out.result["documents"] == []


def test_a_response_replayed_into_another_request_is_refused(world):
    w = wallet(world)
    first = reader(world)
    answer = w.online(ORIGIN).respond(first.start())
    second = reader(world)
    second.start()
    sealed = dcapi.parse_response_json(answer).encode()
    assert not second.receive(sealed).valid
    assert first.receive(sealed).valid
    # and the first reader takes one answer only
    again = first.receive(sealed)
    assert again is first.outcome


def test_reader_authentication_over_the_online_transcript_reaches_the_holder(world):
    now = dt.datetime.now(dt.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"), x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca = (x509.CertificateBuilder().subject_name(name("Shop CA")).issuer_name(name("Shop CA"))
          .public_key(ca_key.public_key()).serial_number(1).not_valid_before(now - dt.timedelta(days=1))
          .not_valid_after(now + dt.timedelta(days=365))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True).sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder().subject_name(name("Shop Web Reader")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(2).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=300))
            .add_extension(x509.ExtendedKeyUsage([x509.ObjectIdentifier("1.0.18013.5.1.6")]), critical=True)
            .sign(ca_key, hashes.SHA256()))
    shown = []
    consent = InteractiveConsent(ask=lambda q: "y", show=shown.append)
    se = wallet_sim.open_secure_element(world["phone"], world["home"])
    w = Wallet(se.transmit, consent, reader_trust_anchors=[ca])
    r = reader(world, reader_signer=cose.key_signer(key), reader_chain=[leaf.public_bytes(serialization.Encoding.DER)])
    out = present_online_in_process(w, r)
    assert out.valid, failed(out.result)
    assert shown[:2] == [f"web site: {ORIGIN} (online request, as the browser reports it)",
                         "reader: CN=Shop Web Reader,C=JP (verified)"]
    # through a relaying origin the reader's signature no longer verifies for the holder
    shown.clear()
    r = reader(world, reader_signer=cose.key_signer(key), reader_chain=[leaf.public_bytes(serialization.Encoding.DER)])
    present_online_in_process(w, r, origin="https://relay.example")
    assert shown[1].startswith("reader: CN=Shop Web Reader,C=JP (NOT verified)")


def test_the_holder_rules_can_name_the_origins_answered(world):
    consent = RulesConsent.from_mapping({"documents": {"*": {"*": "*"}}, "origins": ["https://shop.example/"]})
    assert present_online_in_process(wallet(world, consent), reader(world)).valid
    other = OnlineReaderSession([REQUEST], pipeline(world), "https://other.example")
    out = present_online_in_process(wallet(world, consent), other)
    assert failed(out.result) == ["response_status"]
    assert "documentErrors" in out.result["checks"][1]["reason"]
    assert any(e.detail == "nothing released" for e in out.wallet_events)


@pytest.mark.parametrize("request_value", [
    {"protocol": "openid4vp", "data": {}},
    {"protocol": "org-iso-mdoc", "data": {"deviceRequest": "oA", "encryptionInfo": "AAAA"}},
    "not an object",
])
def test_a_request_the_wallet_cannot_answer_raises_a_typed_error(world, request_value):
    session = wallet(world).online(ORIGIN)
    with pytest.raises(OnlineRequestError):
        session.respond(request_value)
    assert session.state == "terminated"
    with pytest.raises(OnlineRequestError, match="already"):
        session.respond(request_value)


def test_a_malformed_device_request_is_answered_with_a_status(world):
    key = ec.generate_private_key(ec.SECP256R1())
    info = dcapi.EncryptionInfo.build(key.public_key())
    request = dcapi.DcApiRequest(b"\xa1\x01\x02", info).to_json()  # {1: 2}: CBOR, no DeviceRequest
    answer = wallet(world).online(ORIGIN).respond(request)
    plain = dcapi.open_response(dcapi.parse_response_json(answer), key, dcapi.session_transcript(info, ORIGIN))
    assert DeviceResponse.decode(plain).status == 12  # CBOR validation error


@pytest.mark.parametrize(("origin", "ok"), [
    ("https://shop.example", True), ("http://127.0.0.1:8471", True), ("https://shop.example/", False),
    ("https://shop.example/path", False), ("shop.example", False), ("https://Shop.example", False),
    ("ftp://shop.example", False), ("", False),
])
def test_a_reader_origin_is_a_serialized_web_origin(origin, ok):
    if ok:
        assert check_origin(origin) == origin
    else:
        with pytest.raises(ReaderSessionError):
            check_origin(origin)


def test_origin_of_a_url_is_what_a_browser_serializes():
    assert origin_of("https://Shop.Example:443/reader/") == "https://shop.example"
    assert origin_of("http://127.0.0.1:8471/x") == "http://127.0.0.1:8471"
    assert origin_of("http://[::1]:80") == "http://[::1]"


FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(data=st.binary(max_size=300))
def test_fuzzed_encrypted_responses_give_a_failed_session_check(world, data):
    r = reader(world)
    r.start()
    outcome = r.receive(data)
    assert not outcome.valid and [c.name for c in outcome.result.checks] == ["session"]


@FUZZ
@given(plain=st.binary(max_size=300) | st.builds(cbor.dumps, st.recursive(
    st.none() | st.integers() | st.text(max_size=5) | st.binary(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=10)))
def test_a_sound_envelope_around_anything_never_crashes_the_reader(world, plain):
    """The response opens (it was sealed to this request), the plaintext is anything."""
    r = reader(world)
    request = dcapi.DcApiRequest.parse(r.start())
    sealed = dcapi.seal(plain, request.encryption_info, r.transcript)
    outcome = r.receive(sealed.encode())
    assert not outcome.valid
    assert outcome.result.checks[0].name == "session" and outcome.result.checks[0].passed


# -- over HTTP ----------------------------------------------------------------------------------


def _client(service: ReaderService) -> TestClient:
    return TestClient(reader_app(service), base_url="http://reader.test")


def test_online_over_http_valid_and_the_result_route_agrees(world):
    service = ReaderService(pipeline(world), [REQUEST], origin=ORIGIN)
    with _client(service) as client:
        out = present_online_over_http(wallet(world), "http://reader.test", origin=ORIGIN, client=client)
        assert out.valid, failed(out.result)
        sid = json.loads(client.post("/online/sessions").content)["session"]
        assert client.get(f"/sessions/{sid}/result").status_code == 409  # awaiting the wallet
    # the wallet's default origin is the reader URL's own, which is not this reader's page
    with _client(service) as client:
        out = present_online_over_http(wallet(world), "http://reader.test", client=client)
        assert failed(out.result) == ["session"]


def test_over_http_a_malformed_body_leaves_the_session_open(world):
    service = ReaderService(pipeline(world), [REQUEST], origin=ORIGIN)
    with _client(service) as client:
        opened = client.post("/online/sessions")
        assert opened.status_code == 201 and opened.headers["location"].startswith("/online/sessions/")
        body = opened.json()
        assert body["origin"] == ORIGIN and body["request"]["protocol"] == "org-iso-mdoc"
        url = opened.headers["location"]
        for bad in (b"not json", b"{}", json.dumps({"response": "!!"}).encode(), "\u00e9".encode("latin-1")):
            r = client.post(url, content=bad, headers={"Content-Type": "application/json"})
            assert r.status_code == 400 and r.headers["content-type"].startswith("application/problem+json")
        answer = wallet(world).online(ORIGIN).respond(body["request"])
        r = client.post(url, json=answer)
        assert r.status_code == 200 and r.json()["valid"]
        assert client.post("/online/sessions/unknown", json=answer).status_code == 404


def test_a_reader_without_an_origin_refuses_online_sessions_by_name(world):
    with _client(ReaderService(pipeline(world), [REQUEST])) as client:
        r = client.post("/online/sessions")
        assert r.status_code == 409 and "--origin" in r.json()["detail"]
        with pytest.raises(PresentError, match="refused an online request: HTTP 409"):
            present_online_over_http(wallet(world), "http://reader.test", client=client)


def test_an_online_session_opened_by_one_reader_is_finished_by_another(world, engine):
    """Two reader processes on one database (the sessions' table): the HPKE key sealed in the
    row, the dcapi transcript tells the second worker what kind of session it continues."""
    from reader.sessions import AesGcmSealer

    sealer = AesGcmSealer(bytes(32))
    a = ReaderService(pipeline(world), [REQUEST], origin=ORIGIN, engine=engine, session_sealer=sealer)
    b = ReaderService(pipeline(world), [REQUEST], origin=ORIGIN, engine=engine, session_sealer=sealer)
    sid, request = a.open_online()
    answer = wallet(world).online(ORIGIN).respond(request)
    assert b.message(sid, dcapi.parse_response_json(answer).encode()) is not None
    verdict = json.loads(a.result(sid))
    assert verdict["valid"], failed(verdict)


def test_a_stored_session_of_the_wrong_kind_is_not_continued():
    from reader.online import resume_any

    key = ec.generate_private_key(ec.SECP384R1())
    transcript = dcapi.session_transcript("abc", ORIGIN).raw
    with pytest.raises(ReaderSessionError, match="P-256"):
        resume_any([REQUEST], None, key, transcript)
    with pytest.raises(ReaderSessionError):
        resume_any([REQUEST], None, key, cbor.dumps("nonsense"))


# -- the CLI: `mcred present --online` ---------------------------------------------------------


@pytest.fixture(scope="module")
def served(world):
    from test_present_http import Server, free_port

    port = free_port()
    service = ReaderService(pipeline(world), [REQUEST], origin=f"http://127.0.0.1:{port}")
    with Server(reader_app(service), port) as server:
        yield server.url


def _cli(*args: str):
    import typer
    from typer.testing import CliRunner

    from mcred.cli.present_cmds import register

    app = typer.Typer()
    register(app)

    @app.callback()
    def _main() -> None: ...

    return CliRunner().invoke(app, list(args))


def test_present_online_cli_valid_and_the_saved_transcript_verifies_again(world, served, tmp_path, monkeypatch):
    from test_present_kit import T0

    monkeypatch.setenv("MCRED_HOME", str(world["home"]))
    rules = tmp_path / "consent.json"
    rules.write_text(json.dumps({"documents": {DOCTYPE: {NS: ["family_name", "age_over_20"]}}}))
    saved = tmp_path / "online.cbor"
    r = _cli("present", "--phone", world["phone"], "--reader", served, "--online", "--consent", str(rules),
             "--json", "--save", str(saved))
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["valid"] and set(result["documents"][0]["elements"][NS]) == {"family_name", "age_over_20"}
    # `mcred verify` checks the device signature over the saved dcapi transcript again
    pem = tmp_path / "iaca.pem"
    pem.write_bytes(world["pki"].iaca_pem())
    r = _cli("verify", str(saved), "--trust", str(pem), "--at", (T0 + dt.timedelta(hours=1)).isoformat(),
             "--json", "--offline")
    checks = {c["name"]: c["passed"] for c in json.loads(r.stdout)["checks"]}
    assert checks["device_authentication"] and checks["issuer_signature"] and checks["value_digests"]
    # through another origin: the reader refuses, exit 1
    r = _cli("present", "--phone", world["phone"], "--reader", served, "--online", "--origin", "https://relay.example",
             "--consent", str(rules), "--json")
    assert r.exit_code == 1
    assert [c["name"] for c in json.loads(r.stdout)["checks"] if not c["passed"]] == ["session"]


@pytest.mark.parametrize("args", [["--online", "--mac"], ["--online", "--qr", "q.png"],
                                  ["--origin", "https://shop.example"]])
def test_present_online_option_mistakes_exit_2(world, served, tmp_path, monkeypatch, args):
    monkeypatch.setenv("MCRED_HOME", str(world["home"]))
    monkeypatch.chdir(tmp_path)
    rules = tmp_path / "consent.json"
    rules.write_text("{}")
    r = _cli("present", "--phone", world["phone"], "--reader", served, "--consent", str(rules), "--json", *args)
    assert r.exit_code == 2
    assert "--online" in json.loads(r.stdout)["error"]


def test_our_wallet_answers_a_request_of_the_multipaz_online_verifier(world):
    """A request multipaz's verifier made (tests/vectors): the wallet checks its reader
    authentication (ESP256 over the Annex C transcript of its origin) and answers, sealed to
    multipaz's key. It asks for an mDL, which this phone does not hold: documentErrors."""
    from pathlib import Path


    vector = json.loads((Path(__file__).parent / "vectors" / "annex-c-multipaz-request.json").read_text())
    signed_at = dt.datetime.fromisoformat(vector["signedAt"])
    se = wallet_sim.open_secure_element(world["phone"], world["home"])
    w = Wallet(se.transmit, RulesConsent.allow_all(), clock=lambda: signed_at)
    session = w.online(vector["origin"])
    answer = session.respond({"protocol": "org-iso-mdoc", "data": {
        "deviceRequest": vector["deviceRequestB64"], "encryptionInfo": vector["encryptionInfoB64"]}})
    sealed = dcapi.parse_response_json(answer)
    assert len(sealed.enc) == 65
    event = next(e for e in session.events if e.kind == "response")
    assert event.doc_type == "org.iso.18013.5.1.mDL" and event.detail == "docType not held"
    assert event.reader.subject == "CN=OWF Multipaz Online Verifier Single-Use Reader Key"
    assert event.reader.signature_valid and not event.reader.trusted
    assert DeviceResponse.decode(session.device_response).document_errors == ({"org.iso.18013.5.1.mDL": 0},)
    # through another origin the same request's reader signature does not verify
    session = w.online("https://relay.example")
    session.respond({"protocol": "org-iso-mdoc", "data": {
        "deviceRequest": vector["deviceRequestB64"], "encryptionInfo": vector["encryptionInfoB64"]}})
    event = next(e for e in session.events if e.kind == "response")
    assert not event.reader.signature_valid


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(st.binary(max_size=200), st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["protocol", "data", "response", "vp_token", "error"]) | st.text(max_size=6), inner, max_size=4),
    max_leaves=10).map(lambda v: json.dumps(v).encode())),
    protocol=st.sampled_from(["org-iso-mdoc", "openid4vp-v1-unsigned"]))
def test_any_body_posted_to_an_online_session_is_a_400_or_a_verdict(world, body, protocol):
    """No body the browser (or anyone) posts makes the reader answer 5xx: a 400 problem for
    what is no credential response, else a verdict, failed unless the wallet made it."""
    service = ReaderService(pipeline(world), [REQUEST], origin=ORIGIN)
    with _client(service) as client:
        opened = client.post("/online/sessions", params={"protocol": protocol}).json()
        r = client.post(f"/online/sessions/{opened['session']}", content=body,
                        headers={"Content-Type": "application/json"})
        assert r.status_code in (200, 400), r.text
        if r.status_code == 400:
            assert r.headers["content-type"].startswith("application/problem+json")
        else:
            assert r.json()["valid"] is False
