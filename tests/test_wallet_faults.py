"""The hostile phone (wallet_sim.faults): each fault makes our reader fail exactly the check
the fault names, in every way a phone presents (QR code, NFC tap, online, cross-device), and
the phone's SE is the same afterwards. An honest phone beside it stays VALID."""

from __future__ import annotations

import pytest
from test_present_kit import DOCTYPE, NS, Clock, kit_pipeline, kit_world

import wallet_sim
from mcred.present import (
    present_cross_device_in_process,
    present_in_process,
    present_nfc_in_process,
    present_online_in_process,
)
from reader.online import Oid4vpRedirectReaderSession, OnlineReaderSession
from reader.session import ReaderSession, RequestSpec
from wallet_sim.consent import RulesConsent
from wallet_sim.faults import FAULTS, FaultError, fault
from wallet_sim.wallet import Wallet

REQUEST = RequestSpec(DOCTYPE, {NS: {"family_name": False, "birth_date": False}})


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return kit_world(tmp_path_factory, slots=(0, 1))


def wallet(world, name=None, **kw) -> Wallet:
    se = wallet_sim.open_secure_element(world["phone"], world["home"])
    return Wallet(se.transmit, RulesConsent.allow_all(), clock=Clock(), fault=fault(name), **kw)


def reader(world) -> ReaderSession:
    return ReaderSession([REQUEST], kit_pipeline(world["pki"]))


def failed(out) -> dict[str, str]:
    return {c["name"]: c["reason"] for c in out.result["checks"] if not c["passed"]}


@pytest.mark.parametrize("name", [n for n in FAULTS if n != "replay"])
def test_each_fault_is_refused_by_the_check_it_names(world, name):
    se = wallet_sim.open_secure_element(world["phone"], world["home"])
    before = se.persisted_image()
    out = present_in_process(wallet(world, name), reader(world))
    assert not out.valid
    assert FAULTS[name].refused_by in failed(out), failed(out)
    assert wallet_sim.open_secure_element(world["phone"], world["home"]).persisted_image() == before
    assert present_in_process(wallet(world), reader(world)).valid  # the same phone, honest again


def test_a_replayed_document_is_refused_after_a_genuine_first_presentation(world):
    w = wallet(world, "replay")
    assert present_in_process(w, reader(world)).valid
    again = present_in_process(w, reader(world))
    assert not again.valid and "device_authentication" in failed(again)


def test_a_forged_mac_is_refused_too(world):
    out = present_in_process(wallet(world, "device-signature", device_auth="mac"), reader(world))
    assert not out.valid and "device_authentication" in failed(out)


@pytest.mark.parametrize("name", ["item-digest", "untrusted-issuer", "unrequested"])
def test_faults_reach_the_reader_by_nfc_online_and_cross_device(world, name):
    expected = FAULTS[name].refused_by
    out = present_nfc_in_process(wallet(world, name), reader(world))
    assert not out.valid and expected in failed(out)
    out = present_online_in_process(wallet(world, name),
                                    OnlineReaderSession([REQUEST], kit_pipeline(world["pki"]), "https://shop.example"))
    assert not out.valid and expected in failed(out)
    out = present_cross_device_in_process(wallet(world, name), Oid4vpRedirectReaderSession(
        [REQUEST], kit_pipeline(world["pki"]), response_uri="https://shop.example/oid4vp/responses/1"))
    assert not out.valid and expected in failed(out)


def test_an_unknown_fault_is_named():
    with pytest.raises(FaultError, match="'nope': one of item-digest, doc-type"):
        fault("nope")


def test_the_commands_take_a_fault_and_replay_across_runs(world, tmp_path, monkeypatch):
    import datetime as dt
    import json

    from test_present_kit import make_phone
    from typer.testing import CliRunner

    from mcred.cli.main import app

    monkeypatch.setenv("MCRED_HOME", str(world["home"]))
    phone = make_phone(world["home"], world["pki"], idx=None, now=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))
    iaca = tmp_path / "iaca.pem"
    iaca.write_bytes(world["pki"].iaca_pem())
    rules = tmp_path / "consent.json"
    rules.write_text('{"documents": {"*": {"*": "*"}}}')
    base = ["reader", "nfc", "--json", "--phone", phone, "--consent", str(rules), "--trust", str(iaca),
            "--no-require-status", "--no-ds-crl", "--request", f"{NS}:family_name"]

    def run(*args):
        result = CliRunner().invoke(app, [*base, *args])
        return result.exit_code, json.loads(result.stdout)

    code, out = run("--fault", "item-digest")
    assert code == 1 and not next(c for c in out["checks"] if c["name"] == "value_digests")["passed"]
    assert run("--fault", "replay")[0] == 0  # the first presentation is genuine, and kept
    code, out = run("--fault", "replay")  # another run: the kept Document, over the old transcript
    assert code == 1 and not next(c for c in out["checks"] if c["name"] == "device_authentication")["passed"]
    assert run()[0] == 0
    code, out = run("--fault", "nope")
    assert code == 2 and "'nope': one of item-digest" in out["error"]
    listed = json.loads(CliRunner().invoke(app, ["wallet", "faults", "--json"]).stdout)
    assert [f["fault"] for f in listed] == list(FAULTS)


def test_mcred_present_fault_all_checks_a_reader_over_http(world, tmp_path, monkeypatch):
    """`mcred present --fault all`: an honest presentation and one per fault, against a reader
    service; ours judges every one as it must (proximity, and online Annex C)."""
    import json

    from test_present_http import Server, free_port
    from typer.testing import CliRunner

    from mcred.cli.main import app
    from mcred.present import reader_app
    from reader.http import ReaderService

    monkeypatch.setenv("MCRED_HOME", str(world["home"]))
    rules = tmp_path / "consent.json"
    rules.write_text('{"documents": {"*": {"*": "*"}}}')
    port = free_port()
    service = ReaderService(kit_pipeline(world["pki"]), [REQUEST], origin=f"http://127.0.0.1:{port}")
    with Server(reader_app(service), port) as server:
        for extra in ([], ["--online"]):
            result = CliRunner().invoke(app, ["present", "--phone", world["phone"], "--reader", server.url,
                                              "--consent", str(rules), "--fault", "all", "--json", *extra])
            assert result.exit_code == 0, result.output
            report = json.loads(result.stdout)
            assert report["conformant"] and [r["fault"] for r in report["runs"]] == [None, *FAULTS]
            assert report["runs"][0]["valid"] and not any(r["valid"] for r in report["runs"][1:])
        result = CliRunner().invoke(app, ["present", "--phone", world["phone"], "--reader", server.url,
                                          "--fault", "all", "--json"])
        assert result.exit_code == 2 and "needs --consent" in json.loads(result.stdout)["error"]
