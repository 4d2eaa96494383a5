"""The reader's online test page in a real browser (headless Chromium, Debian's, through
interop/browser/page.mjs): it loads with its script under its CSP and no console error, the
click opens one reader session per protocol the reader asks with, and the browser's Digital
Credentials API takes the page's requests to its credential picker (a malformed request is
refused at once with a TypeError; ours stay pending: no wallet answers here). Skips, saying
why, where Chromium or node is not installed (.ci/run installs Debian's chromium where it can).
"""

from __future__ import annotations

import shutil

import pytest
from fastapi import FastAPI, Request
from node_bridge import NodeBridge
from test_present_http import Server, free_port
from test_present_kit import DOCTYPE, NS, kit_pipeline, make_pki

from mcred.present import reader_app
from reader.http import ReaderService
from reader.session import RequestSpec

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NODE = NodeBridge("browser", "puppeteer-core", "page.mjs")
why = "needs Chromium (Debian package chromium)" if CHROMIUM is None else NODE.unavailable()
pytestmark = pytest.mark.skipif(why is not None, reason=f"online page in a browser: {why}")


def test_the_page_takes_both_requests_to_the_browsers_credential_picker():
    pki = make_pki()
    port = free_port()
    service = ReaderService(kit_pipeline(pki),
                            [RequestSpec(DOCTYPE, {NS: {"family_name": False}})], origin=f"http://127.0.0.1:{port}")
    with Server(reader_app(service), port) as server:
        seen = NODE.call({"url": f"{server.url}/online", "chromium": CHROMIUM})
    assert seen["logs"] == [], seen["logs"]  # no CSP violation, no script error, no failed request
    assert "GET /online/page.js 200" in seen["seen"]
    if not seen["hasApi"]:
        pytest.skip("this Chromium has no Digital Credentials API (DigitalCredential)")
    assert [s for s in seen["seen"] if s.startswith("POST")] == [
        "POST /online/sessions?protocol=org-iso-mdoc 201", "POST /online/sessions?protocol=openid4vp-v1-unsigned 201"]
    (call,) = seen["calls"]
    assert call["mediation"] == "required"
    assert [r["protocol"] for r in call["digital"]["requests"]] == ["org-iso-mdoc", "openid4vp-v1-unsigned"]
    # taken to the picker: neither refused as malformed (TypeError) nor as an unknown protocol
    assert seen["outcome"] == "pending", seen["outcome"]
    assert seen["malformed"] == "TypeError"  # the control: what the API does refuse at once
    assert seen["out"] == "waiting for the wallet..."


def test_the_page_shows_a_qr_code_a_phone_answers_and_draws_the_verdict(tmp_path):
    """Cross-device in the real browser: the QR code (an SVG data: URI) loads under the page's
    CSP, the phone (our wallet, behind a small endpoint) scans the URI the page shows and
    posts its answer to the reader, and the page, polling, draws VALID."""
    from test_present_kit import Clock, reader_world

    import wallet_sim
    from mcred.present import wallet_cross_device
    from wallet_sim.consent import RulesConsent
    from wallet_sim.wallet import Wallet

    world = reader_world(tmp_path)
    pki, home, phone = world["pki"], world["home"], world["phone"]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    service = ReaderService(kit_pipeline(pki), [RequestSpec(DOCTYPE, {NS: {"family_name": False}})], origin=base,
                            public_url=base)
    phone_app = FastAPI()

    @phone_app.post("/scan")
    async def scan(request: Request) -> dict:
        from fastapi.concurrency import run_in_threadpool

        uri = (await request.json())["uri"]
        se = wallet_sim.open_secure_element(phone, home)
        wallet = Wallet(se.transmit, RulesConsent.allow_all(), clock=Clock())
        try:
            done = await run_in_threadpool(wallet_cross_device, wallet, uri)
        except Exception as exc:  # noqa: BLE001 - reported to the test through the bridge
            return {"status": 0, "error": f"{type(exc).__name__}: {exc}"}
        return {"status": done.status}

    with Server(reader_app(service), port) as server, Server(phone_app, free_port()) as phone_server:
        seen = NODE.call({"url": f"{server.url}/online", "chromium": CHROMIUM, "crossDevice": True,
                          "phone": f"{phone_server.url}/scan"})
    assert seen["logs"] == [], seen["logs"]  # the data: SVG is allowed by img-src; no script error
    assert "error" not in seen, seen
    assert seen["qrWidth"] > 100 and seen["uri"].startswith("openid4vp://?client_id=redirect_uri")
    assert seen["phone"] == {"status": 200}, seen["phone"]
    assert "POST /online/sessions?protocol=openid4vp-cross-device&qr=true 201" in seen["seen"]
    assert seen["verdict"] == "VALID", seen["out"]
    assert "answered with openid4vp-cross-device" in seen["out"] and "山田" in seen["out"]
