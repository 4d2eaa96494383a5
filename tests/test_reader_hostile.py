"""The hostile reader (reader.hostile): each fault the reader makes on purpose meets the
answer ISO/IEC 18013-5 prescribes from our wallet (SessionData status 10, DeviceResponse
status 11 or 12), judged by the reader's wallet_refusal check; forged readerAuth is never
shown to the holder as verified; the wallet's credential is untouched; and the command
takes --hostile and names what is wrong."""

from __future__ import annotations

import json

import pytest
from test_present_kit import DOCTYPE, NS, Clock, kit_pipeline, kit_world, reader_pki
from typer.testing import CliRunner

import wallet_sim
from mcred.cli.main import app
from mcred.present import present_in_process, present_nfc_in_process
from reader.errors import ReaderSessionError
from reader.hostile import HOSTILE, HostileError, hostile
from reader.session import WALLET_REFUSAL, ReaderSession, RequestSpec
from wallet_sim.consent import InteractiveConsent, RulesConsent
from wallet_sim.wallet import Wallet

REQUEST = RequestSpec(DOCTYPE, {NS: {"family_name": False}})
STATUS_FAULTS = [h for h in HOSTILE.values() if h.session_status is not None or h.response_status is not None]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return kit_world(tmp_path_factory)


def wallet(world, consent=None, **kw) -> Wallet:
    se = wallet_sim.open_secure_element(world["phone"], world["home"])
    return Wallet(se.transmit, consent or RulesConsent.allow_all(), clock=Clock(), **kw)


def reader(world, name=None, **kw) -> ReaderSession:
    return ReaderSession([REQUEST], kit_pipeline(world["pki"]), hostile=hostile(name), **kw)


@pytest.mark.parametrize("h", STATUS_FAULTS, ids=lambda h: h.name)
def test_the_wallet_answers_each_fault_as_the_standard_says(world, h):
    se = wallet_sim.open_secure_element(world["phone"], world["home"])
    before = se.persisted_image()
    for present in (present_in_process, present_nfc_in_process):
        out = present(wallet(world), reader(world, h.name))
        (check,) = [c for c in out.result["checks"] if c["name"] == WALLET_REFUSAL]
        assert check["passed"] and out.valid, check
        assert f"it must {h.phone_must}" in check["reason"]
    assert wallet_sim.open_secure_element(world["phone"], world["home"]).persisted_image() == before


@pytest.mark.parametrize("name", ["reader-auth-signature", "reader-auth-transcript"])
@pytest.mark.parametrize("auth_all", [False, True])
def test_forged_reader_auth_is_never_shown_as_verified(world, name, auth_all):
    pki = reader_pki()
    shown = []
    w = wallet(world, InteractiveConsent(ask=lambda q: "y", show=shown.append), reader_trust_anchors=[pki.ca])
    present_in_process(w, reader(world, name, reader_signer=pki.signer, reader_chain=pki.chain,
                                 reader_auth_all=auth_all))
    assert shown[0] == "reader: CN=Shop Reader 1,C=JP (NOT verified)", shown
    # a holder who answers trusted readers only answers none of them
    cautious = RulesConsent.from_mapping({"documents": {"*": {"*": "*"}}, "trusted_readers_only": True})
    out = present_in_process(wallet(world, cautious, reader_trust_anchors=[pki.ca]),
                             reader(world, name, reader_signer=pki.signer, reader_chain=pki.chain,
                                    reader_auth_all=auth_all))
    assert not out.valid


def test_a_wallet_that_answered_otherwise_fails_the_check(world):
    """The reader's judgement itself: a phone that answers a garbage request with data (here:
    the reader expects status 11 but gets a normal response, as a lax wallet would give)."""
    class Expects12(ReaderSession):
        def start(self, *args, **kwargs):
            sent = super().start(*args, **kwargs)  # sends garbage: the wallet answers 11
            self.hostile = HOSTILE["invalid-request"]  # ... where this reader expects 12
            return sent

    out = present_in_process(wallet(world), Expects12([REQUEST], kit_pipeline(world["pki"]),
                                                      hostile=hostile("garbage-request")))
    (check,) = [c for c in out.result["checks"] if c["name"] == WALLET_REFUSAL]
    assert not check["passed"] and "status 11" in check["reason"] and not out.valid


def test_reader_auth_faults_need_a_reader_key_and_unknown_ones_are_named(world):
    with pytest.raises(ReaderSessionError, match="reader-auth-signature forges readerAuth"):
        reader(world, "reader-auth-signature")
    with pytest.raises(HostileError, match="'nope': one of wrong-session-key"):
        hostile("nope")


def _nfc_command(world, tmp_path, monkeypatch) -> list[str]:
    """`mcred reader nfc` tapping the world's phone in-process, trusting its IACA, the
    holder releasing everything."""
    monkeypatch.setenv("MCRED_HOME", str(world["home"]))
    iaca = tmp_path / "iaca.pem"
    iaca.write_bytes(world["pki"].iaca_pem())
    rules = tmp_path / "consent.json"
    rules.write_text('{"documents": {"*": {"*": "*"}}}')
    return ["reader", "nfc", "--json", "--phone", world["phone"], "--consent", str(rules), "--trust", str(iaca)]


def test_mcred_reader_nfc_hostile(world, tmp_path, monkeypatch):
    base = _nfc_command(world, tmp_path, monkeypatch)
    result = CliRunner().invoke(app, [*base, "--hostile", "wrong-session-key"])
    assert result.exit_code == 0, result.output
    (check,) = json.loads(result.stdout)["checks"]
    assert check["name"] == WALLET_REFUSAL and "SessionData status 10" in check["reason"]
    result = CliRunner().invoke(app, [*base, "--hostile", "reader-auth-signature"])
    assert result.exit_code == 2 and "needs a reader key" in json.loads(result.stdout)["error"]
    result = CliRunner().invoke(app, [*base, "--hostile", "nope"])
    assert result.exit_code == 2 and "one of wrong-session-key" in json.loads(result.stdout)["error"]
    listed = json.loads(CliRunner().invoke(app, ["reader", "hostile", "--json"]).stdout)
    assert [h["hostile"] for h in listed] == list(HOSTILE)


def test_mcred_reader_nfc_hostile_all_in_process(world, tmp_path, monkeypatch):
    from cryptography.hazmat.primitives import serialization

    base = [*_nfc_command(world, tmp_path, monkeypatch), "--hostile", "all"]
    report = json.loads(CliRunner().invoke(app, base).stdout)
    assert report["valid"] and [r["hostile"] for r in report["runs"]] == [h.name for h in STATUS_FAULTS]
    pki = reader_pki()
    (tmp_path / "r.pem").write_bytes(pki.leaf.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "r.key").write_bytes(pki.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                           serialization.NoEncryption()))
    result = CliRunner().invoke(app, [*base, "--reader-cert", str(tmp_path / "r.pem"), "--reader-key",
                                      str(tmp_path / "r.key")])
    assert result.exit_code == 0, result.output
    runs = json.loads(result.stdout)["runs"]
    assert [r["hostile"] for r in runs] == list(HOSTILE)
    assert [r["judged"] for r in runs] == [True, True, True, False, False]  # readerAuth: the phone's screen
    result = CliRunner().invoke(app, ["reader", "nfc", "--json", "--trust", str(tmp_path / "iaca.pem"), "--hostile",
                                      "all"])
    assert result.exit_code == 2 and "with --loop" in json.loads(result.stdout)["error"]
