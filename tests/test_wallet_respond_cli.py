"""``mcred wallet respond``: the phone's wallet answers a Digital Credentials API request from
any verifier (here ours, and a real request of the multipaz online verifier), printing the
credential the page would receive; the verifier then judges it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_present_kit import DOCTYPE, NS, kit_pipeline, make_phone, make_pki
from typer.testing import CliRunner

from mcred.cli.main import app
from protocols.mdoc import dcapi
from reader.online import Oid4vpReaderSession, OnlineReaderSession
from reader.session import RequestSpec

ORIGIN = "https://shop.example"
REQUEST = RequestSpec(DOCTYPE, {NS: {"family_name": False, "age_over_20": False}})


@pytest.fixture
def world(home: Path):
    pki = make_pki()
    pipeline = kit_pipeline(pki)
    consent = home / "consent.json"
    consent.write_text(json.dumps({"documents": {"*": {"*": "*"}}}))
    return {"home": home, "phone": make_phone(home, pki), "pipeline": pipeline, "consent": consent}


def _respond(world, request_value, *extra: str):
    path = world["home"] / "request.json"
    path.write_text(json.dumps(request_value))
    return CliRunner().invoke(app, ["wallet", "respond", "--phone", world["phone"], "--request", str(path),
                                    "--origin", ORIGIN, "--consent", str(world["consent"]), *extra])


def test_the_wallet_answers_a_page_for_any_verifier_and_picks_a_protocol(world):
    annex_c = OnlineReaderSession([REQUEST], world["pipeline"], ORIGIN)
    openid = Oid4vpReaderSession([REQUEST], world["pipeline"], ORIGIN)
    offered = {"digital": {"requests": [openid.start(), annex_c.start()]}}
    r = _respond(world, offered)
    assert r.exit_code == 0, r.output
    answer = json.loads(r.stdout)
    assert answer["protocol"] == "org-iso-mdoc"  # preferred when both are offered
    assert annex_c.receive(dcapi.parse_response_json(answer).encode()).valid
    r = _respond(world, offered, "--protocol", "openid4vp-v1-unsigned")
    assert r.exit_code == 0, r.output
    assert openid.receive(r.stdout.encode()).valid


def test_a_real_request_of_the_multipaz_verifier_is_answered(world):
    vector = json.loads((Path(__file__).parent / "vectors" / "annex-c-multipaz-request.json").read_text())
    request = {"protocol": "org-iso-mdoc", "data": {"deviceRequest": vector["deviceRequestB64"],
                                                    "encryptionInfo": vector["encryptionInfoB64"]}}
    path = world["home"] / "request.json"
    path.write_text(json.dumps(request))
    r = CliRunner().invoke(app, ["wallet", "respond", "--phone", world["phone"], "--request", str(path),
                                 "--origin", vector["origin"], "--consent", str(world["consent"])])
    assert r.exit_code == 0, r.output
    sealed = dcapi.parse_response_json(json.loads(r.stdout))  # sealed to multipaz's key: only it can open
    assert len(sealed.enc) == 65


@pytest.mark.parametrize(("request_value", "message"), [
    ({"digital": {"requests": [{"protocol": "carrier-pigeon", "data": {}}]}}, "carrier-pigeon"),
    ({"protocol": "org-iso-mdoc", "data": {"deviceRequest": "oA"}}, "encryptionInfo"),
    ([1, 2], "not a Digital Credentials API request"),
])
def test_requests_the_wallet_cannot_answer_exit_2_naming_why(world, request_value, message):
    r = _respond(world, request_value)
    assert r.exit_code == 2 and message in r.stderr


def test_the_request_can_come_on_stdin_and_the_answer_go_to_a_file(world):
    annex_c = OnlineReaderSession([REQUEST], world["pipeline"], ORIGIN)
    out = world["home"] / "credential.json"
    r = CliRunner().invoke(app, ["wallet", "respond", "--phone", world["phone"], "--request", "-", "--origin", ORIGIN,
                                 "--consent", str(world["consent"]), "--out", str(out)],
                           input=json.dumps(annex_c.start()))
    assert r.exit_code == 0, r.output
    assert annex_c.receive(dcapi.parse_response_json(json.loads(out.read_text())).encode()).valid
    # without consent rules, stdin cannot also be the holder's terminal
    r = CliRunner().invoke(app, ["wallet", "respond", "--phone", world["phone"], "--request", "-", "--origin", ORIGIN],
                           input="{}")
    assert r.exit_code == 2 and "--consent" in r.stderr
