"""``mcred present`` / ``mcred verify`` (the commands registered on a bare Typer app, as
mcred/cli/main.py does): exit 0 only on a VALID verdict, --json in the result shape, the
portrait saved to a file, the transcript saved and verified again."""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path

import pytest
import typer
from test_present_http import Server, free_port
from test_present_kit import DOCTYPE, NS, PORTRAIT, T0, Clock, StatusPublisher, make_phone, make_pki
from typer.testing import CliRunner

from mcred.cli.present_cmds import register
from mcred.present import reader_app, reader_pipeline
from reader.http import ReaderService
from reader.session import RequestSpec

REQUEST = RequestSpec(DOCTYPE, {NS: {"family_name": False, "portrait": False, "birth_date": False}})


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    pki = make_pki()
    clock = Clock()
    pipeline = reader_pipeline(trust=pki.trust(), clock=clock, fetcher=StatusPublisher(pki, clock))
    with Server(reader_app(ReaderService(pipeline, [REQUEST])), free_port()) as server:
        yield {"home": home, "pki": pki, "url": server.url,
               "phone": make_phone(home, pki), "nostatus": make_phone(home, pki, idx=None)}


def cli():
    app = typer.Typer()
    register(app)

    @app.callback()
    def _main() -> None: ...

    return app


def test_present_json_portrait_and_saved_transcript(world, tmp_path, monkeypatch):
    monkeypatch.setenv("MCRED_HOME", str(world["home"]))
    rules = tmp_path / "consent.json"
    rules.write_text(json.dumps({"documents": {DOCTYPE: {NS: ["family_name", "portrait"]}}}))
    r = CliRunner().invoke(cli(), ["present", "--phone", world["phone"], "--reader", world["url"],
                                   "--consent", str(rules), "--json", "--portrait", str(tmp_path / "p.jpg"),
                                   "--save", str(tmp_path / "t.cbor"), "--qr", str(tmp_path / "qr.png")])
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["valid"] and set(result["documents"][0]["elements"][NS]) == {"family_name", "portrait"}
    assert base64.b64decode(result["documents"][0]["elements"][NS]["portrait"]) == PORTRAIT
    assert (tmp_path / "p.jpg").read_bytes() == PORTRAIT
    assert (tmp_path / "qr.png").read_bytes().startswith(b"\x89PNG")
    # verify the saved transcript again: the status list URI is not reachable from here
    pem = tmp_path / "iaca.pem"
    pem.write_bytes(world["pki"].iaca_pem())
    at = (T0 + dt.timedelta(hours=1)).isoformat()
    r = CliRunner().invoke(cli(), ["verify", str(tmp_path / "t.cbor"), "--trust", str(pem), "--at", at,
                                   "--json", "--offline"])
    assert r.exit_code == 1
    failed = {c["name"] for c in json.loads(r.stdout)["checks"] if not c["passed"]}
    assert failed == {"status_list_signature", "status_list_freshness", "revocation_status"}
    # `mcred mdoc verify` (no status) takes the saved file too: its DeviceResponse with its own
    # SessionTranscript and reader key (it said "missing 'version'", found by a README walk-through)
    from mcred.cli.main import app as mcred_app

    r = CliRunner().invoke(mcred_app, ["mdoc", "verify", str(tmp_path / "t.cbor"), "--trust-anchor", str(pem),
                                       "--at", at, "--json"])
    assert r.exit_code == 0, r.output
    checks = {c["name"]: c["passed"] for c in json.loads(r.stdout)["checks"]}
    assert checks["device_authentication"] and all(checks.values())


def test_present_exit_codes(world, tmp_path, monkeypatch):
    monkeypatch.setenv("MCRED_HOME", str(world["home"]))
    rules = tmp_path / "consent.json"
    rules.write_text(json.dumps({"documents": {}}))  # refuse everything: no document, INVALID
    r = CliRunner().invoke(cli(), ["present", "--phone", world["phone"], "--reader", world["url"],
                                   "--consent", str(rules)])
    assert r.exit_code == 1 and "INVALID" in r.output
    # unattended, the phone still says what its screen would: who asked (a README walk-through
    # presented to a revoked reader and was never told)
    assert "phone: reader: anonymous (no reader authentication)" in r.output
    r = CliRunner().invoke(cli(), ["present", "--phone", "ph-nope", "--reader", world["url"], "--json"])
    assert r.exit_code == 2
    r = CliRunner().invoke(cli(), ["present", "--phone", world["phone"], "--reader", f"http://127.0.0.1:{free_port()}",
                                   "--consent", str(rules), "--json"])
    assert r.exit_code == 2 and "reader" in json.loads(r.stdout)["error"]


def test_present_of_a_phone_without_an_mdoc_says_the_phones_reason(world, tmp_path, monkeypatch):
    """A phone whose SE holds no mdoc applet (never provisioned, or wiped by a handover)
    answers the reader with status 10, and the verdict said only "status 10, no documents":
    the phone's own reason (SELECT answered 6A82: nothing written, or wiped) was dropped. It
    is a note now, beside the verdict, on stderr with --json (stdout the verdict alone)."""
    import wallet_sim

    monkeypatch.setenv("MCRED_HOME", str(world["home"]))
    rules = tmp_path / "consent.json"
    rules.write_text(json.dumps({"documents": {"*": {"*": "*"}}}))
    bare = wallet_sim.create_phone(world["home"])
    said = "phone: secure element: SELECT mdoc applet (not on this SE: no mdoc was written to it, or it was wiped)"
    r = CliRunner().invoke(cli(), ["present", "--phone", bare, "--reader", world["url"], "--consent", str(rules)])
    assert r.exit_code == 1 and "INVALID" in r.stdout, r.output
    assert said in r.stdout, r.output
    r = CliRunner().invoke(cli(), ["present", "--phone", bare, "--reader", world["url"], "--consent", str(rules),
                                   "--json"])
    assert r.exit_code == 1 and json.loads(r.stdout)["valid"] is False, r.output
    assert said in r.stderr, r.stderr


def test_present_to_the_wrong_place_or_without_the_token_says_what_to_do(world, tmp_path, monkeypatch):
    """Presenting to the issuer service's root rather than its /reader (404), or to its
    reader without the token it asks (401) or with one lacking the scope reader (403),
    said only the HTTP status and the problem body: each refusal now says what to give."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    def guarded(request) -> JSONResponse:  # noqa: ANN001 - the issuer service's reader mount, its refusals
        status = 403 if request.headers.get("authorization") == "Bearer weak" else 401
        return JSONResponse({"status": status}, status)

    service = Starlette(routes=[Route(path, guarded, methods=["POST"])
                                for path in ("/reader/sessions", "/reader/online/sessions")])

    monkeypatch.setenv("MCRED_HOME", str(world["home"]))
    rules = tmp_path / "consent.json"
    rules.write_text(json.dumps({"documents": {"*": {"*": "*"}}}))
    with Server(service, free_port()) as server:
        for where, token, online, said in (
                ("", [], [], "HTTP 404 (no reader at {url}: `mcred reader serve` answers at its root URL, the "
                             "issuer service's reader at <issuer>/reader)"),
                ("", [], ["--online"], "HTTP 404 (no reader at {url}"),
                ("/reader", [], [], "HTTP 401 (this reader asks a bearer token of scope reader: --token T, from "
                                    "`mcred token create --scope reader`)"),
                ("/reader", [], ["--online"], "HTTP 401 (this reader asks a bearer token of scope reader"),
                ("/reader", ["--token", "bad"], [], "HTTP 401 (the token was refused: unknown, revoked or expired)"),
                ("/reader", ["--token", "weak"], [], "HTTP 403 (the token lacks the scope reader")):
            r = CliRunner().invoke(cli(), ["present", "--phone", world["phone"], "--reader", server.url + where,
                                           "--consent", str(rules), "--json", *token, *online])
            assert r.exit_code == 2, r.output
            assert said.format(url=server.url) in json.loads(r.stdout)["error"], (where, token, online, r.stdout)


def test_present_without_consent_and_without_terminal_says_so(world, monkeypatch):
    # CliRunner's stdin is no terminal: nobody can be asked, so no presentation starts.
    monkeypatch.setenv("MCRED_HOME", str(world["home"]))
    r = CliRunner().invoke(cli(), ["present", "--phone", world["phone"], "--reader", world["url"], "--json"])
    assert r.exit_code == 2
    assert "--consent" in json.loads(r.stdout)["error"]
    r = CliRunner().invoke(cli(), ["present", "--phone", world["phone"], "--reader", world["url"]])
    assert r.exit_code == 2 and "no terminal" in r.output
    # an error is on stderr, as provision's (stdout carries verdicts); with --json it is the object
    assert r.stdout == "" and r.stderr.startswith("error: no --consent rules file")


def test_present_like_commands_say_their_errors_on_stderr(world, tmp_path, monkeypatch):
    """`mcred present` printed its errors on stdout, `mcred provision` on stderr: the
    present-like commands (present, reader ask|nfc|serve|crl, verify) now say them on
    stderr; their verdicts stay on stdout, and with --json the error object too."""
    monkeypatch.setenv("MCRED_HOME", str(world["home"]))
    rules = tmp_path / "consent.json"
    rules.write_text(json.dumps({"documents": {"*": {"*": "*"}}}))
    dead = f"http://127.0.0.1:{free_port()}"
    for args in (["present", "--phone", world["phone"], "--reader", dead, "--consent", str(rules)],
                 ["present", "--phone", "ph-nope", "--reader", world["url"], "--consent", str(rules)],
                 ["reader", "ask", "--reader", dead, "--wait", "1"],
                 ["reader", "nfc", "--phone", world["phone"], "--consent", str(rules)],  # no --trust
                 ["verify", str(tmp_path / "nothing.cbor"), "--trust", str(tmp_path / "nothing.pem")],
                 ["wallet", "respond", "--phone", world["phone"], "--consent", str(rules)]):
        r = CliRunner().invoke(cli(), args)
        assert r.exit_code == 2, (args, r.output)
        said = r.stderr.strip()  # stdout may have the engagement's QR code shown before the reader failed
        assert said.startswith("error: ") and said[len("error: "):] not in r.stdout, (args, r.stdout, r.stderr)


def test_verify_saved_transcript_without_status_reference(world, tmp_path, monkeypatch):
    monkeypatch.setenv("MCRED_HOME", str(world["home"]))
    rules = tmp_path / "consent.json"
    rules.write_text(json.dumps({"documents": {"*": {"*": "*"}}}))
    r = CliRunner().invoke(cli(), ["present", "--phone", world["nostatus"], "--reader", world["url"],
                                   "--consent", str(rules), "--save", str(tmp_path / "t.cbor")])
    assert r.exit_code == 0, r.output
    assert "VALID" in r.output and "family_name" in r.output
    pem = tmp_path / "iaca.pem"
    pem.write_bytes(world["pki"].iaca_pem())
    r = CliRunner().invoke(cli(), ["verify", str(tmp_path / "t.cbor"), "--trust", str(pem),
                                   "--at", (T0 + dt.timedelta(hours=1)).isoformat()])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli(), ["verify", str(tmp_path / "t.cbor"), "--trust", str(pem),
                                   "--at", (T0 + dt.timedelta(days=60)).isoformat(), "--json"])
    assert r.exit_code == 1 and "validity" in {c["name"] for c in json.loads(r.stdout)["checks"] if not c["passed"]}
    (tmp_path / "bad.cbor").write_bytes(b"\x00")
    r = CliRunner().invoke(cli(), ["verify", str(tmp_path / "bad.cbor"), "--trust", str(pem), "--json"])
    assert r.exit_code == 1 and json.loads(r.stdout)["checks"][0]["name"] == "saved_transcript"


def _present_and_save(world, tmp_path, monkeypatch, phone: str) -> Path:
    """Present ``phone`` to the world's reader releasing everything asked; the saved
    transcript's path."""
    monkeypatch.setenv("MCRED_HOME", str(world["home"]))
    rules = tmp_path / "consent.json"
    rules.write_text(json.dumps({"documents": {"*": {"*": "*"}}}))
    r = CliRunner().invoke(cli(), ["present", "--phone", phone, "--reader", world["url"],
                                   "--consent", str(rules), "--save", str(tmp_path / "t.cbor")])
    assert r.exit_code == 0, r.output
    return tmp_path / "t.cbor"


def _issued(saved: Path) -> bytes:
    """The IssuerSigned of the first document of a saved transcript."""
    from protocols import cbor
    from protocols.mdoc import DeviceResponse

    return DeviceResponse.decode(cbor.loads(saved.read_bytes())["deviceResponse"]).documents[0].issuer_signed.encode()


def test_verify_an_issuer_signed_as_issued(world, tmp_path, monkeypatch):
    """``mcred verify`` on an IssuerSigned alone (as base64url, the OpenID4VCI form): the
    reader pipeline's checks but device authentication, the status list included."""
    pem = tmp_path / "iaca.pem"
    pem.write_bytes(world["pki"].iaca_pem())
    at = (T0 + dt.timedelta(hours=1)).isoformat()
    for phone, offline_failures in ((world["nostatus"], set()),
                                    (world["phone"], {"status_list_signature", "status_list_freshness",
                                                      "revocation_status"})):
        issued = _issued(_present_and_save(world, tmp_path, monkeypatch, phone))
        (tmp_path / "issued.txt").write_bytes(base64.urlsafe_b64encode(issued).rstrip(b"="))
        r = CliRunner().invoke(cli(), ["verify", str(tmp_path / "issued.txt"), "--trust", str(pem), "--at", at,
                                       "--json", "--offline"])
        out = json.loads(r.stdout)
        names = [c["name"] for c in out["checks"]]
        assert "device_authentication" not in names and "response_status" not in names
        assert {"issuer_signature", "value_digests", "validity", "ds_profile", "revocation_status"} <= set(names)
        assert {c["name"] for c in out["checks"] if not c["passed"]} == offline_failures, out["checks"]
        assert r.exit_code == (1 if offline_failures else 0)


def test_the_reader_service_verifies_an_issuer_signed_over_http(world, tmp_path, monkeypatch):
    """POST /issuer-signed/verify: the IssuerSigned as CBOR or base64url text, the verdict in
    the result shape; what is not an IssuerSigned is a 422 naming the expected form."""
    import httpx

    issued = _issued(_present_and_save(world, tmp_path, monkeypatch, world["phone"]))
    url = f"{world['url']}/issuer-signed/verify"
    for body in (issued, base64.urlsafe_b64encode(issued).rstrip(b"=")):
        answer = httpx.post(url, content=body, headers={"Content-Type": "application/cbor"})
        assert answer.status_code == 200, answer.text
        verdict = answer.json()
        assert verdict["valid"], [c for c in verdict["checks"] if not c["passed"]]
        names = {c["name"] for c in verdict["checks"]}
        assert "revocation_status" in names and "device_authentication" not in names
    bad = httpx.post(url, content=b"\xa1\x01\x02")
    assert bad.status_code == 422 and "issuerAuth" in bad.text


def test_a_reader_whose_verifier_cannot_check_an_issuer_signed_says_so():
    from fastapi.testclient import TestClient
    from test_reader_sessions_shared import NoVerifier

    client = TestClient(reader_app(ReaderService(NoVerifier(), [REQUEST])))
    from protocols import cbor

    answer = client.post("/issuer-signed/verify", content=cbor.dumps({"issuerAuth": []}))
    assert answer.status_code == 501 and "IssuerSigned" in answer.text


def test_trace_shows_the_wallets_apdus_to_its_se(world, tmp_path, monkeypatch):
    """`mcred --trace present`: the APDU pairs the wallet app sends its SE (the device key's
    signature over the transcript), as the TSM's flows show theirs (a README walk-through
    found --trace silent for present)."""
    from mcred.cli.main import app as mcred_app
    from mcred.cli.state import OPTIONS

    monkeypatch.setenv("MCRED_HOME", str(world["home"]))
    rules = tmp_path / "consent.json"
    rules.write_text(json.dumps({"documents": {"*": {"*": "*"}}}))
    try:
        r = CliRunner().invoke(mcred_app, ["--trace", "present", "--phone", world["phone"], "--reader", world["url"],
                                           "--consent", str(rules)])
    finally:
        OPTIONS.trace = False
    traced = [line for line in r.output.splitlines() if line.startswith(("A>> mdoc", "A<< mdoc"))]
    assert traced and any(line.startswith("A<< mdoc") and line.rstrip().endswith("9000") for line in traced), r.output
