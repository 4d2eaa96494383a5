"""The stand-alone reader's online test page (GET /online, reader/online_page.js): served
with a strict content security policy, and its exchange (``present()``) run in node against
a live reader, the browser's credential picker being the test's edge: a wallet behind a
small HTTP endpoint answers the request the page passes to ``navigator.credentials.get``,
for the origin the browser would report."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from test_present_http import Server, free_port
from test_present_kit import DOCTYPE, NS, Clock, kit_pipeline, make_pki, reader_world

import wallet_sim
from mcred.present import reader_app
from reader.http import PAGE_CSP, ReaderService
from reader.session import RequestSpec
from wallet_sim.consent import RulesConsent
from wallet_sim.wallet import Wallet

PAGE_JS = Path(__file__).resolve().parents[1] / "reader" / "online_page.js"
REQUEST = RequestSpec(DOCTYPE, {NS: {"family_name": False, "age_over_20": False}})


def page_script(name: str, args: str, call: str, prelude: str = "") -> str:
    """A node module that imports ``name`` from the page's script, takes ``args`` from its
    command line, and prints as JSON what awaiting ``call`` gives (or ``{"error"}``)."""
    return f"""
import {{ {name} }} from {json.dumps(PAGE_JS.as_uri())};
const [{args}] = process.argv.slice(1);
{prelude}
try {{
  console.log(JSON.stringify(await {call}));
}} catch (e) {{
  console.log(JSON.stringify({{ error: String(e) }}));
}}
"""


def _service(pki, origin: str | None) -> ReaderService:
    return ReaderService(kit_pipeline(pki),
                         [REQUEST], origin=origin)


def test_the_page_is_served_with_its_origin_and_a_strict_policy():
    pki = make_pki()
    client = TestClient(reader_app(_service(pki, "https://shop.example")))
    page = client.get("/online")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"] == PAGE_CSP and "script-src 'self'" in PAGE_CSP
    assert "<code>https://shop.example</code>" in page.text and 'src="online/page.js"' in page.text
    # the protocols it asks with: no signed OpenID4VP request without the reader's certificate
    assert ('<body data-protocols="org-iso-mdoc openid4vp-v1-unsigned" data-cross-device="false" data-nfc="false" data-ble="false">'
            in page.text)
    script = client.get("/online/page.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert script.content == PAGE_JS.read_bytes()
    assert "innerHTML" not in script.text.replace("never innerHTML", "")  # values drawn as text only
    # a reader without an origin serves no page (its online sessions are off)
    assert TestClient(reader_app(_service(pki, None))).get("/online").status_code == 404
    # not in the issuer service: its reader routes need a bearer token, which a page has not
    schema = client.get("/openapi.json").json()
    assert "/online" not in schema["paths"] and "/online/sessions" in schema["paths"]


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node (Debian package nodejs) to run the page's script")
def test_the_page_script_presents_through_a_live_reader(tmp_path):
    world = reader_world(tmp_path)
    pki, home, phone = world["pki"], world["home"], world["phone"]
    port = free_port()
    origin = f"http://127.0.0.1:{port}"

    wallet_app = FastAPI()  # the phone's wallet, as the browser's picker reaches it

    @wallet_app.post("/wallet")
    async def answer(request: Request) -> dict:
        body = await request.json()  # the requests the page offered, and the one this wallet answers
        se = wallet_sim.open_secure_element(phone, home)
        consent = RulesConsent.from_mapping({"documents": {DOCTYPE: {NS: ["family_name"]}}})
        chosen = next(r for r in body["requests"] if r["protocol"] == body["protocol"])
        return Wallet(se.transmit, consent, clock=Clock()).online(body["origin"]).respond(chosen)

    script = page_script("present", "base, walletUrl, origin, protocol", "present(base, { get })", prelude="""
const get = async (options) => {
  const r = await fetch(walletUrl, { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ requests: options.digital.requests, protocol, origin }) });
  const answer = await r.json();
  return { protocol: answer.protocol, data: answer.data };  // a DigitalCredential's members
};""")
    with Server(reader_app(_service(pki, origin)), port) as reader, Server(wallet_app, free_port()) as wallet:
        def run(as_origin: str, protocol: str) -> dict:
            done = subprocess.run(["node", "--input-type=module", "-e", script, reader.url, f"{wallet.url}/wallet",
                                   as_origin, protocol], capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, done.stderr
            return json.loads(done.stdout)

        for protocol in ("org-iso-mdoc", "openid4vp-v1-unsigned"):  # the wallet answers one of the two
            verdict = run(origin, protocol)
            assert verdict["valid"] and verdict["protocol"] == protocol, verdict
            assert verdict["documents"][0]["elements"] == {NS: {"family_name": "山田"}}
        # the same page opened on another origin (a relay): refused either way
        relayed = run("http://relay.example", "org-iso-mdoc")
        assert not relayed["valid"] and relayed["checks"][0]["name"] == "session"
        relayed = run("http://relay.example", "openid4vp-v1-unsigned")
        assert [c["name"] for c in relayed["checks"] if not c["passed"]] == ["device_authentication"]


def test_a_reader_with_a_certificate_offers_the_signed_request_too():
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import NameOID
    from test_present_kit import T0

    from protocols import cose

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Shop Web Verifier")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(7).not_valid_before(T0).not_valid_after(T0.replace(year=T0.year + 1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("shop.example")]), critical=False)
            .sign(key, hashes.SHA256()))
    pki = make_pki()
    service = ReaderService(kit_pipeline(pki),
                            [REQUEST], origin="https://shop.example", reader_signer=cose.key_signer(key),
                            reader_chain=[cert.public_bytes(Encoding.DER)])
    client = TestClient(reader_app(service))
    page = client.get("/online")
    assert '<body data-protocols="org-iso-mdoc openid4vp-v1-signed openid4vp-v1-unsigned" data-cross-device="false" data-nfc="false" data-ble="false">' \
        in page.text
    signed = client.post("/online/sessions", params={"protocol": "openid4vp-v1-signed"})
    assert signed.status_code == 201 and signed.json()["request"]["protocol"] == "openid4vp-v1-signed"


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node (Debian package nodejs) to run the page's script")
def test_the_page_shows_a_qr_code_and_draws_the_verdict_the_phone_posted(tmp_path):
    """The cross-device button: the page opens a session with its QR code (an SVG data: URI,
    allowed by the page's img-src), polls the verdict; meanwhile the phone scans the URI and
    talks to the reader itself (request by value, direct_post.jwt)."""
    import threading
    from urllib.parse import unquote

    from mcred.present import wallet_cross_device

    world = reader_world(tmp_path)
    pki, home, phone = world["pki"], world["home"], world["phone"]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    service = ReaderService(kit_pipeline(pki), [REQUEST], origin=base, public_url=base)
    assert 'data-cross-device="true"' in TestClient(reader_app(service)).get("/online").text
    script = page_script("crossDevice", "base",
                         "crossDevice(base, { waitS: 1, onRequest: (r) => console.log(JSON.stringify(r)) })")
    with Server(reader_app(service), port) as reader:
        node = subprocess.Popen(["node", "--input-type=module", "-e", script, reader.url], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        timer = threading.Timer(60, node.kill)
        timer.start()
        try:
            shown = json.loads(node.stdout.readline())
            assert shown["qr"].startswith("data:image/svg+xml") and "<svg" in unquote(shown["qr"])
            assert shown["uri"].startswith("openid4vp://?client_id=redirect_uri")
            se = wallet_sim.open_secure_element(phone, home)
            consent = RulesConsent.from_mapping({"documents": {DOCTYPE: {NS: ["family_name"]}}})
            done = wallet_cross_device(Wallet(se.transmit, consent, clock=Clock()), shown["uri"])
            assert done.status == 200
            verdict = json.loads(node.stdout.readline())
        finally:
            timer.cancel()
            node.kill()
            node.wait()
    assert verdict.get("valid") and verdict["protocol"] == "openid4vp-cross-device", verdict
    assert verdict["documents"][0]["elements"] == {NS: {"family_name": "山田"}}


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node (Debian package nodejs) to run the page's script")
def test_the_page_reads_a_tap_on_the_readers_nfc_reader(tmp_path):
    """The NFC button: the page POSTs /nfc/taps and draws the verdict of the phone tapped on
    the reader's own NFC reader (here a simulated phone as the tapper's transport)."""
    from reader.nfc import tap
    from wallet_sim.nfc import NfcTag

    world = reader_world(tmp_path)
    pki, home, phone = world["pki"], world["home"], world["phone"]
    consent = RulesConsent.from_mapping({"documents": {DOCTYPE: {NS: ["family_name"]}}})

    def tapper(session, wait):
        se = wallet_sim.open_secure_element(phone, home)
        return tap(NfcTag(Wallet(se.transmit, consent, clock=Clock())).transmit, session)

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    service = ReaderService(kit_pipeline(pki), [REQUEST], origin=base, tapper=tapper)
    assert 'data-nfc="true"' in TestClient(reader_app(service)).get("/online").text
    script = page_script("nfcTap", "base", "nfcTap(base, { waitS: 5 })")

    def run(url: str) -> dict:
        done = subprocess.run(["node", "--input-type=module", "-e", script, url], capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    with Server(reader_app(service), port) as reader:
        verdict = run(reader.url)
    assert verdict.get("valid") and verdict["protocol"] == "nfc", verdict
    assert verdict["documents"][0]["elements"] == {NS: {"family_name": "山田"}}
    # a reader without an NFC reader: the page says why
    service.tapper = None
    with Server(reader_app(service), free_port()) as reader:
        assert "HTTP 404 this reader has no NFC reader" in run(reader.url)["error"]


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node (Debian package nodejs) to run the page's script")
def test_the_page_reads_a_scanned_qr_code_over_the_readers_bluetooth(tmp_path):
    """The Bluetooth field and button: the page POSTs /ble/reads with the QR code its scanner
    typed and draws the verdict of the phone read over BLE on the reader's own controller
    (here a port of `mcred ble radio`, the phone `mcred phone ble` in a process of its own)."""
    pytest.importorskip("bumble")
    import os
    import sys

    from test_present_ble_cli import _first_line, _stop, ble_radio

    world = reader_world(tmp_path)
    consent = tmp_path / "consent.json"
    consent.write_text(json.dumps({"documents": {DOCTYPE: {NS: ["family_name"]}}}))
    env = dict(os.environ, MCRED_HOME=str(world["home"]))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with ble_radio(env) as hci:
        service = ReaderService(kit_pipeline(world["pki"]), [REQUEST], origin=base, ble_hci=hci[1])
        assert 'data-ble="true"' in TestClient(reader_app(service)).get("/online").text
        phone = subprocess.Popen([sys.executable, "-m", "mcred", "phone", "ble", world["phone"], "--hci", hci[0],
                                  "--consent", str(consent), "--wait", "30", "--json"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        try:
            uri = _first_line(phone, "mcred phone ble")["engagement"]
            script = page_script("bleRead", "base, uri", "bleRead(base, ` ${uri}\\n`, { waitS: 20 })")
            with Server(reader_app(service), port) as reader:
                done = subprocess.run(["node", "--input-type=module", "-e", script, reader.url, uri],
                                      capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stderr
            verdict = json.loads(done.stdout)
            assert verdict.get("valid") and verdict["protocol"] == "ble", verdict
            assert verdict["documents"][0]["elements"] == {NS: {"family_name": "山田"}}
        finally:
            _stop(phone)
    # a reader without a controller: the page says why, and the field is off
    service.ble_hci = None
    assert 'data-ble="false"' in TestClient(reader_app(service)).get("/online").text
    script = page_script("bleRead", "base", "bleRead(base, 'mdoc:AAAA', { waitS: 1 })")
    with Server(reader_app(service), free_port()) as reader:
        done = subprocess.run(["node", "--input-type=module", "-e", script, reader.url], capture_output=True,
                              text=True, timeout=60)
    assert "HTTP 404 this reader has no Bluetooth controller" in json.loads(done.stdout)["error"]
