"""Cross-device presentation with OpenID4VP 1.0 (no Digital Credentials API): the verifier's
page shows an ``openid4vp://`` QR code, the phone's wallet fetches the request object from
the reader's request_uri (signed with the reader's certificate, x509_san_dns or x509_hash)
or reads it from the URI (unsigned, redirect_uri:), and posts ``response=<JWE>``
(direct_post.jwt) to the reader's response_uri; the page reads the verdict from the reader.

Refusals asserted by name: a response posted into another session does not decrypt; a
device response made for another verifier fails device authentication; a form with another
session's state is refused; a second answer is refused; a request object that sends the
answer to a host its certificate does not name is refused by the wallet. Over HTTP with
real processes, and a session opened by one reader process is finished by another."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from test_present_kit import DOCTYPE, NS, kit_world
from test_present_oid4vp import (
    CONSENT,
    REQUEST,
    _reader_pki,
    failed,
    pipeline,
    reader_eku_or_not,
    wallet,
)

from mcred.present import (
    present_cross_device_in_process,
    present_cross_device_over_http,
    reader_app,
    wallet_cross_device,
)
from protocols import cose
from protocols.mdoc import DeviceResponse, oid4vp_redirect
from reader.http import ReaderService
from reader.online import Oid4vpRedirectReaderSession
from wallet_sim.wallet import OnlineRequestError

BASE = "https://shop.example"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return kit_world(tmp_path_factory, slots=(0, 1))


def unsigned(world, sid="s1") -> Oid4vpRedirectReaderSession:
    return Oid4vpRedirectReaderSession([REQUEST], pipeline(world), response_uri=f"{BASE}/oid4vp/responses/{sid}")


def signed(world, key, chain, sid="s1", base=BASE) -> Oid4vpRedirectReaderSession:
    return Oid4vpRedirectReaderSession([REQUEST], pipeline(world), response_uri=f"{base}/oid4vp/responses/{sid}",
                                       request_uri=f"{base}/oid4vp/requests/{sid}", reader_signer=cose.key_signer(key),
                                       reader_chain=chain)


def test_unsigned_by_value_valid_with_exactly_the_consented_items(world):
    r = unsigned(world)
    out = present_cross_device_in_process(wallet(world), r)
    assert out.valid, failed(out.result)
    assert out.result["documents"][0]["elements"] == {NS: {"family_name": "山田", "age_over_20": True}}
    assert "cross-device" in out.result["checks"][0]["reason"]
    assert r.redirect.client_id == f"redirect_uri:{BASE}/oid4vp/responses/s1"
    assert oid4vp_redirect.is_redirect_transcript(r.transcript)
    assert DeviceResponse.decode(out.device_response).documents[0].errors == {NS: {"portrait": 0}}


def test_signed_by_reference_names_the_verifier_to_the_holder(world):
    from wallet_sim.consent import InteractiveConsent
    from wallet_sim.wallet import Wallet

    ca, key, chain = _reader_pki()
    r = signed(world, key, chain)
    opened = r.start()
    assert opened["client_id"] == "x509_san_dns:shop.example"
    assert parse_qs(urlsplit(opened["uri"]).query) == {"client_id": ["x509_san_dns:shop.example"],
                                                       "request_uri": [f"{BASE}/oid4vp/requests/s1"]}
    shown: list[str] = []
    base = wallet(world)
    holder = Wallet(base.applet._transmit, InteractiveConsent(ask=lambda q: "y", show=shown.append),
                    clock=base.clock, reader_trust_anchors=[ca])
    session = holder.cross_device(opened["uri"])
    assert session.fetch.method == "GET" and session.fetch.accept == "application/oauth-authz-req+jwt"
    post = session.respond(r.request_object(r.request_claims, r.reader_signer, r.reader_chain))
    assert "reader: CN=Shop Web Verifier,C=JP (verified)" in shown, shown
    assert any("web site: https://shop.example (cross-device" in line for line in shown), shown
    outcome = r.receive(urlencode(post.form).encode())
    assert outcome.result.valid, failed(outcome.result.to_json())


def test_a_request_object_signed_without_the_reader_authentication_eku_is_not_from_a_trusted_verifier(world):
    """By reference as through the browser: the request object's certificate, of a trusted
    reader CA but without mdlReaderAuth, is no reader certificate; its path does not
    validate (OID4VP 1.0 5.9.3), so even a holder who releases everything to anyone is never
    asked. Nothing is posted to its response_uri either: that verifier is not authenticated,
    so its response_uri is whoever made the request's (8.5 follows RFC 6749 4.1.2.1); the
    wallet raises UntrustedVerifierError, which says why, and the reader's session is left
    unanswered. With the EKU the same key is verified and answered."""
    from wallet_sim.consent import InteractiveConsent
    from wallet_sim.wallet import UntrustedVerifierError, Wallet

    pki, without, with_eku = reader_eku_or_not()
    base = wallet(world)
    asked: list[str] = []
    generous = Wallet(base.applet._transmit, InteractiveConsent(ask=lambda q: asked.append(q) or "y",
                                                                show=lambda _: None),
                      clock=base.clock, reader_trust_anchors=[pki.ca])
    for chain, trusted in ((without, False), (with_eku, True)):
        r = signed(world, pki.key, chain)
        session = generous.cross_device(r.start()["uri"])
        request_object = r.request_object(r.request_claims, r.reader_signer, r.reader_chain)
        if trusted:
            post = session.respond(request_object)
            assert post.method == "POST" and post.url == f"{BASE}/oid4vp/responses/s1"
            (event,) = [e for e in session.events if e.kind == "response"]
            assert event.reader.trusted and event.reader.signature_valid and asked
            assert r.receive(urlencode(post.form).encode()).result.valid
        else:
            with pytest.raises(UntrustedVerifierError, match=(
                    "^the request's certificate does not chain to a reader CA this wallet trusts: leaf certificate "
                    f"lacks extended key usage 1.0.18013.5.1.6; nothing was sent to {BASE}/oid4vp/responses/s1")) as exc:
                session.respond(request_object)
            assert not exc.value.reader.trusted and exc.value.reader.signature_valid
            (event,) = [e for e in session.events if e.kind == "error"]
            assert event.reader.reason == "leaf certificate lacks extended key usage 1.0.18013.5.1.6"
            assert not asked and not [e for e in session.events if e.kind == "response"]
            assert session.state == "terminated"


def test_a_request_object_of_a_reader_ca_the_wallet_does_not_trust_is_refused_without_a_post(world):
    """A wallet that holds no reader CA of the verifier's (or none at all) cannot validate
    the request object's certificate path: it asks no one and posts nothing (no
    invalid_request to a response_uri it cannot attribute to anyone: OID4VP 1.0 8.5, RFC
    6749 4.1.2.1); over HTTP the verifier's response_uri is never called."""
    from wallet_sim.consent import InteractiveConsent
    from wallet_sim.wallet import UntrustedVerifierError, Wallet

    ca, key, chain = _reader_pki()
    base = wallet(world)
    for anchors in ([], [_reader_pki()[0]]):
        asked: list[str] = []
        stranger = Wallet(base.applet._transmit, InteractiveConsent(ask=lambda q, asked=asked: asked.append(q) or "y",
                                                                    show=lambda _: None),
                          clock=base.clock, reader_trust_anchors=anchors)
        r = signed(world, key, chain)
        session = stranger.cross_device(r.start()["uri"])
        with pytest.raises(UntrustedVerifierError, match="does not chain to a reader CA this wallet trusts"):
            session.respond(r.request_object(r.request_claims, r.reader_signer, r.reader_chain))
        assert not asked
    # the wallet app over HTTP: the request object is fetched, the response_uri never called
    import httpx

    from mcred.present_http import wallet_cross_device

    r = signed(world, key, chain)
    uri = r.start()["uri"]
    calls: list[tuple[str, str]] = []

    def verifier(request: httpx.Request) -> httpx.Response:
        calls.append((request.method, request.url.path))
        if request.url.path.startswith("/oid4vp/requests/"):
            return httpx.Response(200, content=r.request_object(r.request_claims, r.reader_signer, r.reader_chain),
                                  headers={"Content-Type": "application/oauth-authz-req+jwt"})
        return httpx.Response(200, json={})

    with httpx.Client(transport=httpx.MockTransport(verifier)) as client, \
            pytest.raises(UntrustedVerifierError, match="nothing was sent to"):
        wallet_cross_device(wallet(world, reader_trust_anchors=[]), uri, client=client)
    assert [m for m, path in calls if path.startswith("/oid4vp/responses/")] == []
    assert calls and all(path.startswith("/oid4vp/requests/") for _m, path in calls)


def test_request_uri_method_post_binds_the_wallets_nonce(world):
    ca, key, chain = _reader_pki()
    r = signed(world, key, chain)
    opened = r.start()
    session = wallet(world, reader_trust_anchors=[ca]).cross_device(opened["uri"] + "&request_uri_method=post")
    assert session.fetch.method == "POST" and set(session.fetch.form) == {"wallet_nonce"}
    stale = r.request_object(r.request_claims, r.reader_signer, r.reader_chain)  # fetched without the nonce
    with pytest.raises(OnlineRequestError, match="wallet_nonce"):
        session.respond(stale)
    session = wallet(world, reader_trust_anchors=[ca]).cross_device(opened["uri"] + "&request_uri_method=post")
    post = session.respond(r.request_object(r.request_claims, r.reader_signer, r.reader_chain,
                                            wallet_nonce=session.wallet_nonce))
    assert r.receive(urlencode(post.form).encode()).result.valid


def test_a_reader_whose_certificate_does_not_name_its_host_signs_with_the_hash(world):
    ca, key, chain = _reader_pki(dns="other.example")
    r = signed(world, key, chain)
    out = present_cross_device_in_process(wallet(world, reader_trust_anchors=[ca]), r)
    assert r.redirect.client_id.startswith("x509_hash:")
    assert out.valid, failed(out.result)


def test_the_wallet_refuses_an_answer_to_a_host_the_certificate_does_not_name(world):
    ca, key, chain = _reader_pki()
    r = signed(world, key, chain, base="https://collector.example")
    # the reader picks the hash (its certificate names shop.example); forge the DNS one
    opened = r.start()
    forged = oid4vp_redirect.RedirectRequest(r.redirect.request, "x509_san_dns:shop.example",
                                             r.redirect.response_uri, r.redirect.state)
    uri = oid4vp_redirect.authorization_uri("x509_san_dns:shop.example", opened["request_uri"])
    session = wallet(world).cross_device(uri)
    with pytest.raises(OnlineRequestError, match="certified host"):
        session.respond(forged.sign(r.reader_signer, chain))
    assert session.state == "terminated" and session.device_response is None


def test_the_wallet_sends_answers_over_https_or_to_this_machine_only(world):
    r = Oid4vpRedirectReaderSession([REQUEST], pipeline(world), response_uri="http://shop.example/oid4vp/responses/1")
    session = wallet(world).cross_device(r.start()["uri"])
    with pytest.raises(OnlineRequestError, match="https"):
        session.respond(None)
    local = Oid4vpRedirectReaderSession([REQUEST], pipeline(world),
                                        response_uri="http://127.0.0.1:8471/oid4vp/responses/1")
    assert present_cross_device_in_process(wallet(world), local).valid


def test_an_answer_posted_into_another_session_does_not_decrypt(world):
    first, second = unsigned(world, "a"), unsigned(world, "b")
    session = wallet(world).cross_device(first.start()["uri"])
    second.start()
    post = session.respond(None)
    outcome = second.receive(urlencode(post.form).encode())
    assert failed(outcome.result.to_json()) == ["session"]
    reason = outcome.result.to_json()["checks"][0]["reason"]
    assert "state" in reason or "decrypt" in reason


def test_a_device_response_made_for_another_verifier_fails_device_authentication(world):
    """The relay: a form re-encrypted to this reader's key and state around a DeviceResponse
    the phone made for another verifier's request (another client_id and response_uri)."""
    victim, relay = unsigned(world, "victim"), unsigned(world, "relay")
    victim.start()
    relay_uri = relay.start()["uri"]
    made = wallet(world).cross_device(relay_uri)
    made.respond(None)
    token = oid4vp_redirect.response_form({"q0": [oid4vp_redirect.p.b64url(made.device_response)]}, victim.redirect)
    outcome = victim.receive(urlencode(token).encode())
    assert failed(outcome.result.to_json()) == ["device_authentication"]


def test_a_form_with_another_state_is_refused(world):
    r = unsigned(world)
    r.start()
    outcome = r.receive(urlencode({"error": "access_denied", "state": "not-it"}).encode())
    assert failed(outcome.result.to_json()) == ["session"] and "state" in outcome.result.checks[0].reason


def test_a_holder_who_releases_nothing_answers_access_denied(world):
    r = unsigned(world)
    session = wallet(world, consent={"documents": {}}).cross_device(r.start()["uri"])
    post = session.respond(None)
    assert post.form["error"] == "access_denied" and post.form["state"] == r.redirect.state
    outcome = r.receive(urlencode(post.form).encode())
    assert "access_denied" in outcome.result.checks[0].reason


@pytest.mark.parametrize("uri", ["https://shop.example/", "openid4vp://?client_id=x509_san_dns%3Ashop.example",
                                 "openid4vp://?client_id=redirect_uri%3Ahttps%3A%2F%2Fa.example%2Fr"])
def test_uris_the_wallet_cannot_use_raise_a_typed_error(world, uri):
    with pytest.raises(OnlineRequestError):
        wallet(world).cross_device(uri).respond(None)


def test_a_session_needs_its_request_to_be_resumed(world):
    r = unsigned(world)
    r.start()
    resumed = Oid4vpRedirectReaderSession.resume([REQUEST], pipeline(world), r.e_reader_private_key, r.transcript.raw,
                                                 r.request_claims)
    assert resumed.redirect == r.redirect
    from reader.errors import ReaderSessionError

    with pytest.raises(ReaderSessionError, match="request is missing"):
        Oid4vpRedirectReaderSession.resume([REQUEST], pipeline(world), r.e_reader_private_key, r.transcript.raw)


# -- over HTTP ------------------------------------------------------------------------------------


def test_over_http_the_wallet_refuses_to_answer_in_clear_http_to_another_machine(world):
    from mcred.present import PresentError

    ca, key, chain = _reader_pki(dns="reader.test")
    service = ReaderService(pipeline(world), [REQUEST], origin=BASE, public_url="http://reader.test/",
                            reader_signer=cose.key_signer(key), reader_chain=chain)
    with TestClient(reader_app(service), base_url="http://reader.test") as client:
        with pytest.raises(PresentError, match="only over https"):
            present_cross_device_over_http(wallet(world), "http://reader.test", client=client)


def _service(world, *, dns="localhost", base="http://localhost", signed_=True, engine=None, sealer=None):
    """A reader service, and the reader CA a wallet trusts it by (None unsigned)."""
    if not signed_:
        return ReaderService(pipeline(world), [REQUEST], origin=BASE, public_url=base, engine=engine,
                             session_sealer=sealer), None
    ca, key, chain = _reader_pki(dns=dns)
    return ReaderService(pipeline(world), [REQUEST], origin=BASE, public_url=base, reader_signer=cose.key_signer(key),
                         reader_chain=chain, engine=engine, session_sealer=sealer), ca


@pytest.mark.parametrize("signed_", [True, False])
def test_over_http_valid_and_the_routes_answer_as_oid4vp_says(world, signed_):
    service, ca = _service(world, signed_=signed_)
    phone = wallet(world, reader_trust_anchors=[ca] if ca is not None else ())
    shown: list[str] = []
    with TestClient(reader_app(service), base_url="http://localhost") as client:
        out = present_cross_device_over_http(phone, "http://localhost", client=client, on_uri=shown.append)
        assert out.valid, failed(out.result)
        assert shown and shown[0].startswith("openid4vp://?client_id=")
        opened = client.post("/online/sessions", params={"protocol": "openid4vp-cross-device"})
        assert opened.status_code == 201
        sid = opened.json()["session"]
        assert opened.headers["location"] == f"/sessions/{sid}/result"
        r = client.get(f"/oid4vp/requests/{sid}")
        if signed_:
            assert r.status_code == 200 and r.headers["content-type"] == "application/oauth-authz-req+jwt"
            claims = json.loads(oid4vp_redirect.p.unb64url(r.text.split(".")[1], "c"))
            assert claims["response_uri"] == f"http://localhost/oid4vp/responses/{sid}"
            posted = client.post(f"/oid4vp/requests/{sid}", data={"wallet_nonce": "wn1"})
            assert json.loads(oid4vp_redirect.p.unb64url(posted.text.split(".")[1], "c"))["wallet_nonce"] == "wn1"
        else:
            assert r.status_code == 404  # by value: nothing to fetch
        assert client.get(f"/sessions/{sid}/result").status_code == 409  # no answer yet
        assert client.get(f"/sessions/{sid}/result", params={"wait": 0.1}).status_code == 409  # waited, still none
        assert client.get(f"/sessions/{sid}/result", params={"wait": 61}).status_code == 422
        assert client.get("/sessions/nope/result", params={"wait": 5}).status_code == 404  # not waited for
        # a body that is no form: the OAuth error, the session still open
        bad = client.post(f"/oid4vp/responses/{sid}", content=b"%%%", headers={"Content-Type": "text/plain"})
        assert bad.status_code == 400 and bad.json()["error"] == "invalid_request"
        assert client.post("/oid4vp/responses/nope", data={"response": "x"}).status_code == 404
        import threading

        answering = threading.Timer(0.2, wallet_cross_device, (phone, opened.json()["request"]["uri"]),
                                    {"client": client})
        answering.start()  # the phone answers while the page waits for the verdict (a long poll)
        waited = client.get(f"/sessions/{sid}/result", params={"wait": 30})
        answering.join()
        assert waited.status_code == 200 and waited.json()["valid"]
        # answered: the request object is gone, and a second answer is refused
        assert client.get(f"/oid4vp/requests/{sid}").status_code == 404
        again = client.post(f"/oid4vp/responses/{sid}", data={"error": "access_denied"})
        assert again.status_code == 400 and "answered already" in again.json()["error_description"]


def test_a_reader_without_a_public_url_opens_no_cross_device_session(world):
    service = ReaderService(pipeline(world), [REQUEST], origin=BASE)
    with TestClient(reader_app(service)) as client:
        r = client.post("/online/sessions", params={"protocol": "openid4vp-cross-device"})
        assert r.status_code == 409 and "--public-url" in r.json()["detail"]


def test_a_cross_device_session_opened_by_one_reader_is_served_and_finished_by_another(world, engine):
    from reader.sessions import AesGcmSealer

    sealer = AesGcmSealer(bytes(32))
    ca, key, chain = _reader_pki(dns="localhost")
    kw = dict(origin=BASE, public_url="http://localhost", reader_signer=cose.key_signer(key), reader_chain=chain,
              engine=engine, session_sealer=sealer)
    a, b = ReaderService(pipeline(world), [REQUEST], **kw), ReaderService(pipeline(world), [REQUEST], **kw)
    sid, opened = a.open_cross_device()
    session = wallet(world, reader_trust_anchors=[ca]).cross_device(opened["uri"])
    post = session.respond(b.request_object(sid))  # the request object from the other worker
    assert b.direct_post(sid, urlencode(post.form).encode()) is True
    verdict = json.loads(a.result(sid))
    assert verdict["valid"], failed(verdict)
    assert b.request_object(sid) is None and b.direct_post(sid, b"error=x") is False


def test_present_and_wallet_respond_cli_cross_device(world, tmp_path, monkeypatch):
    from test_present_cli import cli
    from test_present_http import Server, free_port
    from typer.testing import CliRunner

    app = cli()
    monkeypatch.setenv("MCRED_HOME", str(world["home"]))
    rules = tmp_path / "consent.json"
    rules.write_text(json.dumps(CONSENT))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    service = ReaderService(pipeline(world), [REQUEST], origin=base, public_url=base)
    with Server(reader_app(service), port) as server:
        page_qr = tmp_path / "page.png"
        r = CliRunner().invoke(app, ["present", "--phone", world["phone"], "--reader", server.url, "--online",
                                     "--protocol", "cross-device", "--consent", str(rules), "--qr", str(page_qr)])
        assert r.exit_code == 0, r.output
        assert "openid4vp://?" in r.output and "VALID" in r.output
        assert page_qr.read_bytes().startswith(b"\x89PNG")
        r = CliRunner().invoke(app, ["present", "--phone", world["phone"], "--reader", server.url, "--online",
                                     "--consent", str(rules), "--qr", str(page_qr)])
        assert r.exit_code == 2 and "--qr" in r.output  # Annex C has no code to show
        # the wallet on its own, given the page's QR code as its URI
        import httpx

        opened = httpx.post(f"{base}/online/sessions", params={"protocol": "openid4vp-cross-device"}).json()
        r = CliRunner().invoke(app, ["wallet", "respond", "--phone", world["phone"], "--request",
                                     opened["request"]["uri"], "--consent", str(rules)])
        assert r.exit_code == 0, r.output
        printed = json.loads(r.stdout)
        assert printed["status"] == 200 and printed["client_id"].startswith("redirect_uri:")
        assert printed["documents"] == [{"docType": DOCTYPE, "released": {NS: ["age_over_20", "family_name"]},
                                         "refused": {NS: ["portrait"]}, "not_held": {}, "answered_by": {}}]
        assert httpx.get(f"{base}/sessions/{opened['session']}/result").json()["valid"]
        # answered already: the verifier refuses a second answer, and the wallet says so
        r = CliRunner().invoke(app, ["wallet", "respond", "--phone", world["phone"], "--request",
                                     opened["request"]["uri"], "--consent", str(rules)])
        assert r.exit_code == 2 and "answered already" in r.output
        r = CliRunner().invoke(app, ["wallet", "respond", "--phone", world["phone"], "--request",
                                     opened["request"]["uri"], "--consent", str(rules), "--origin", base])
        assert r.exit_code == 2 and "--origin" in r.output
        # the phone's camera: a picture of the page's QR code (the scan extra)
        pytest.importorskip("zxingcpp", reason="the scan extra (zxing-cpp, Pillow) is not installed")
        import segno

        opened = httpx.post(f"{base}/online/sessions", params={"protocol": "openid4vp-cross-device"}).json()
        picture = tmp_path / "page-qr.png"
        segno.make(opened["request"]["uri"], error="l").save(picture, scale=4)
        r = CliRunner().invoke(app, ["wallet", "respond", "--phone", world["phone"], "--qr", str(picture),
                                     "--consent", str(rules)])
        assert r.exit_code == 0, r.output
        assert httpx.get(f"{base}/sessions/{opened['session']}/result").json()["valid"]
        engagement = tmp_path / "engagement.png"  # a phone's own engagement QR code is no verifier's request
        segno.make("mdoc:owBjMS4wAYIB2BhYS6QBAiABIVgg", error="l").save(engagement, scale=4)
        r = CliRunner().invoke(app, ["wallet", "respond", "--phone", world["phone"], "--qr", str(engagement),
                                     "--consent", str(rules)])
        assert r.exit_code == 2 and "not a verifier's authorization request" in r.output
        r = CliRunner().invoke(app, ["wallet", "respond", "--phone", world["phone"], "--qr", str(picture),
                                     "--request", opened["request"]["uri"], "--consent", str(rules)])
        assert r.exit_code == 2 and "one of the two" in r.output


# -- hostile verifiers and arbitrary requests ------------------------------------------------------


def test_a_verifier_that_does_not_answer_as_oid4vp_says_is_named(world):
    """The request_uri answers an HTTP error, another content type, or a request object that
    does not verify; the response_uri refuses the answer: each a PresentError or a typed
    refusal naming it, nothing posted after a bad request object."""
    from fastapi.responses import PlainTextResponse

    from mcred.present import PresentError

    ca, key, chain = _reader_pki(dns="localhost")
    honest = signed(world, key, chain, sid="h", base="http://localhost")
    opened = honest.start()
    posted: list[bytes] = []
    app = FastAPI()

    @app.get("/oid4vp/requests/{sid}")
    def request_object(sid: str):
        if sid == "gone":
            return PlainTextResponse("no", status_code=404)
        if sid == "text":
            return PlainTextResponse(honest.request_object(honest.request_claims, honest.reader_signer, chain))
        if sid == "forged":
            head, body, sig = honest.request_object(honest.request_claims, honest.reader_signer, chain).split(".")
            return PlainTextResponse(f"{head}.{body}.{sig[::-1]}", media_type="application/oauth-authz-req+jwt")
        return PlainTextResponse(honest.request_object(honest.request_claims, honest.reader_signer, chain),
                                 media_type="application/oauth-authz-req+jwt")

    @app.post("/oid4vp/responses/{sid}")
    async def refuse(sid: str, request: Request):
        posted.append(await request.body())
        return PlainTextResponse("busy", status_code=503)

    with TestClient(app, base_url="http://localhost") as client:
        def scan(sid: str):
            uri = oid4vp_redirect.authorization_uri(opened["client_id"], f"http://localhost/oid4vp/requests/{sid}")
            return wallet_cross_device(wallet(world, reader_trust_anchors=[ca]), uri, client=client)

        with pytest.raises(PresentError, match="HTTP 404"):
            scan("gone")
        with pytest.raises(PresentError, match="content type"):
            scan("text")
        with pytest.raises(OnlineRequestError, match="does not verify"):
            scan("forged")
        assert posted == []  # nothing left the phone for a request it refused
        with pytest.raises(PresentError, match="refused the answer: HTTP 503"):
            scan("fine")
        assert len(posted) == 1 and posted[0].startswith(b"response=")


def test_a_saved_cross_device_presentation_verifies_again(world):
    """``mcred present --save`` keeps the DeviceResponse and the OpenID4VPHandover transcript:
    ``mcred verify``'s pipeline checks the device signature over it again (and a transcript
    of another response_uri does not verify)."""
    from mcred.present import verify_saved
    from protocols import cbor

    out = present_cross_device_in_process(wallet(world), unsigned(world, "saved"))
    result = verify_saved(out.saved(), pipeline(world))
    assert result.valid and {c.name: c.passed for c in result.checks}["device_authentication"]
    saved = cbor.loads(out.saved())
    other = unsigned(world, "other")
    other.start()
    saved["sessionTranscript"] = other.transcript.raw
    result = verify_saved(cbor.dumps(saved), pipeline(world))
    assert [c.name for c in result.checks if not c.passed] == ["device_authentication"]


def test_reader_ask_shows_a_qr_code_any_wallet_can_scan_and_prints_the_verdict(world, tmp_path):
    """``mcred reader ask``: the verifier's page on the command line, for a real wallet app to
    scan; here our phone scans the PNG it writes (the scan extra) and answers the reader."""
    pytest.importorskip("zxingcpp", reason="the scan extra (zxing-cpp, Pillow) is not installed")
    import threading
    import time

    from test_present_cli import cli
    from test_present_http import Server, free_port
    from typer.testing import CliRunner

    from wallet_sim.scan import read_qr

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    service = ReaderService(pipeline(world), [REQUEST], origin=base, public_url=base)
    picture = tmp_path / "ask.png"
    with Server(reader_app(service), port):
        done: dict = {}
        asking = threading.Thread(target=lambda: done.update(r=CliRunner().invoke(
            cli(), ["reader", "ask", "--reader", base, "--qr", str(picture), "--wait", "60", "--json"])))
        asking.start()
        deadline = time.monotonic() + 30
        while not picture.exists() or picture.stat().st_size == 0:
            assert time.monotonic() < deadline and asking.is_alive(), done
            time.sleep(0.05)
        time.sleep(0.1)  # the PNG written whole
        answered = wallet_cross_device(wallet(world), read_qr(picture))
        asking.join(60)
        assert answered.status == 200
        r = done["r"]
        assert r.exit_code == 0, r.output
        verdict = json.loads(r.stdout.strip().splitlines()[-1])
        assert verdict["valid"] and verdict["documents"][0]["elements"] == {NS: {"family_name": "山田",
                                                                                 "age_over_20": True}}
        r = CliRunner().invoke(cli(), ["reader", "ask", "--reader", base, "--wait", "1", "--json"])
        assert r.exit_code == 2 and "no wallet answered within 1 s" in json.loads(r.stdout.strip().splitlines()[-1])[
            "error"]


def test_wallet_respond_tells_an_element_not_held_from_one_refused(world, tmp_path, monkeypatch):
    """`mcred wallet respond` listed an element the document does not carry as "refused", as
    if the holder had said no: it is "not_held". Both are errors in the DeviceResponse
    (ISO/IEC 18013-5: not returned), as before."""
    import httpx
    from test_present_cli import cli
    from test_present_http import Server, free_port
    from typer.testing import CliRunner

    from reader.session import RequestSpec

    monkeypatch.setenv("MCRED_HOME", str(world["home"]))
    rules = tmp_path / "consent.json"
    rules.write_text(json.dumps({"documents": {DOCTYPE: {NS: ["family_name", "age_over_21"]}}}))

    def respond(asked: RequestSpec) -> tuple[dict, bool]:
        """The phone's answer (`mcred wallet respond`'s JSON document) to a cross-device
        reader asking ``asked``, and whether the reader took it."""
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        with Server(reader_app(ReaderService(pipeline(world), [asked], origin=base, public_url=base)), port):
            opened = httpx.post(f"{base}/online/sessions", params={"protocol": "openid4vp-cross-device"}).json()
            r = CliRunner().invoke(cli(), ["wallet", "respond", "--phone", world["phone"], "--request",
                                           opened["request"]["uri"], "--consent", str(rules)])
            assert r.exit_code == 0, r.output
            (doc,) = json.loads(r.stdout)["documents"]
            return doc, httpx.get(f"{base}/sessions/{opened['session']}/result").json()["valid"]

    doc, _ = respond(RequestSpec(DOCTYPE, {NS: {"family_name": False, "age_over_21": False, "age_over_20": False}}))
    assert doc["released"] == {NS: ["family_name"]}
    assert doc["refused"] == {NS: ["age_over_20"]}  # held; the rules do not release it
    assert doc["not_held"] == {NS: ["age_over_21"]}  # the card substitute has no such element
    assert doc["answered_by"] == {}  # age_over_20 = true says nothing of 21 (7.2.5)
    # the holder (36) asked age_over_16, which the card substitute does not hold: age_over_18 =
    # true, released, answers it in its place (7.2.5); answered, so not "not_held" (it was
    # listed there, beside the event's "age_over_18 in place of age_over_16")
    rules.write_text(json.dumps({"documents": {DOCTYPE: {NS: ["family_name", "age_over_18"]}}}))
    doc, valid = respond(RequestSpec(DOCTYPE, {NS: {"family_name": False, "age_over_16": False}}))
    assert doc["released"] == {NS: ["age_over_18", "family_name"]} and doc["refused"] == {}
    assert doc["not_held"] == {} and doc["answered_by"] == {NS: {"age_over_16": "age_over_18"}}
    assert valid
