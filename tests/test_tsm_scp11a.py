"""The TSM's first contact under SCP11a: the SE proves itself with its maker's certificate,
the TSM proves itself with its OCE certificate, which the CA-KLOC key the SE's issuer put
into it must certify; an SE without SCP11a is met with SCP11b, and an SE with a CA-KLOC key
loads no key from an OCE it does not know."""

from __future__ import annotations

import os

import pytest
from cryptography import x509
from test_tsm_fakes import FakeIssuer, FlakyLink
from test_tsm_jobs import MASTER, SECRETS, apdu_whats, check_provisioned, engine  # noqa: F401

import wallet_sim
from tsm.audit import audit_rows
from tsm.errors import CardStatusError, SeAuthenticityError, SecureChannelError, TransportError
from tsm.jobs import Tsm
from tsm.keys import InMemoryMasterKey
from tsm.oce import kloc_certificate, lab_oce
from wallet_sim.se.maker import root_path

FIRST_CONTACT = ["SELECT ISD", "GET DATA SE certificate (BF21, SCP11a)",
                 "PERFORM SECURITY OPERATION (TSM certificate 1 of 1)", "MUTUAL AUTHENTICATE (SCP11a)",
                 "PUT KEY replace 30 by 31", "SELECT ISD", "INITIALIZE UPDATE"]


@pytest.fixture
def world(engine, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setattr(os, "fsync", lambda fd: None)

    class World:
        home = tmp_path / "home"
        issuer = FakeIssuer()

        def phone(self, *, kloc: bool = True, home=None):  # noqa: ANN001
            home = home or self.home
            pid = wallet_sim.create_phone(home, kloc=kloc_certificate(home).public_key() if kloc else None)
            return pid, wallet_sim.open_secure_element(pid, home)

        def make_tsm(self, **kw) -> Tsm:  # noqa: ANN003
            roots = x509.load_pem_x509_certificates(root_path(self.home).read_bytes())
            return Tsm(engine, InMemoryMasterKey(MASTER), issuer=self.issuer, actor="test-op", se_roots=roots, **kw)

        def describe(self, pid):  # noqa: ANN001, ANN202
            return wallet_sim.describe(pid, self.home)

        def keysets(self, pid):  # noqa: ANN001, ANN202
            sd = wallet_sim.describe(pid, self.home)["secure_element"]["security_domains"][0]
            return [k["kvn"] for k in sd["keysets"]]

    w = World()
    w.phone()  # the home's maker and OCE
    w.tsm = w.make_tsm(oce=lab_oce(w.home))
    return w


def _job(tsm: Tsm, pid: str, mdoc_count: int = 1) -> str:
    return tsm.create_job(pid, "provision", {"algorithm": "p384", "mdoc_count": mdoc_count}, SECRETS)


def _events(tsm: Tsm, pid: str) -> list[str]:
    return [r.event for r in audit_rows(tsm.engine, pid)]


def test_first_contact_authenticates_both_sides_then_rotates_under_scp11a(world):
    tsm = world.tsm
    pid, se = world.phone()
    view = tsm.run(_job(tsm, pid), se.transmit)
    assert view.state == "done" and view.results["open-session"]["scp"] == "11a"
    check_provisioned(world, pid, mdoc_count=1)
    assert apdu_whats(tsm.engine, pid)[:7] == FIRST_CONTACT
    assert "se-authenticated" in _events(tsm, pid)


def test_an_se_without_scp11a_is_met_with_scp11b_unless_scp11a_is_required(world):
    tsm = world.tsm
    pid, se = world.phone(kloc=False)
    assert tsm.run(_job(tsm, pid), se.transmit).results["open-session"]["scp"] == "11b"
    assert apdu_whats(tsm.engine, pid)[:4] == ["SELECT ISD", "GET DATA SE certificate (BF21, SCP11a)",
                                               "GET DATA SE certificate (BF21, SCP11b)",
                                               "INTERNAL AUTHENTICATE (SCP11b)"]
    assert "scp11a-not-offered" in _events(tsm, pid)
    strict = world.make_tsm(oce=lab_oce(world.home), require_scp11a=True)
    pid, se = world.phone(kloc=False)
    before = se.path.read_bytes()
    with pytest.raises(SeAuthenticityError, match="offers no SCP11a key"):
        strict.run(_job(strict, pid), se.transmit)
    assert se.path.read_bytes() == before


def test_an_se_refuses_a_tsm_its_issuer_did_not_name(world, tmp_path):
    other = world.make_tsm(oce=lab_oce(tmp_path / "another-operator"))
    pid, se = world.phone()
    before = se.path.read_bytes()
    with pytest.raises(SecureChannelError, match="refused the TSM's certificate 1 \\(SW 6982\\).*CA-KLOC"):
        other.run(_job(other, pid), se.transmit)
    assert se.path.read_bytes() == before and world.keysets(pid) == ["30"]
    assert "oce-refused" in _events(other, pid)
    assert "MUTUAL AUTHENTICATE (SCP11a)" not in apdu_whats(other.engine, pid)


def test_a_tsm_without_an_oce_identity_loads_no_key_on_an_se_that_names_its_oces(world):
    # SCP11b authenticates the SE only: an SE whose issuer named the OCEs that may load keys
    # reads to such a session and changes nothing
    tsm = world.make_tsm()
    pid, se = world.phone()
    with pytest.raises(CardStatusError, match="PUT KEY refused under SCP11b.*OCE identity.*6982"):
        tsm.run(_job(tsm, pid), se.transmit)
    assert world.keysets(pid) == ["30"]


def test_lost_answer_at_each_command_of_the_first_contact_completes_once(world):
    tsm = world.tsm
    for k in range(len(FIRST_CONTACT) + 1):
        pid, se = world.phone()
        job = _job(tsm, pid)
        with pytest.raises(TransportError):
            tsm.run(job, FlakyLink(se, lose_at=k))
        assert tsm.run(job, se.transmit).state == "done", f"lost answer {k}"
        check_provisioned(world, pid, mdoc_count=1)


def test_over_a_pipelining_link_the_certificate_rides_with_mutual_authenticate(world):
    from test_seram import Batches

    tsm = world.tsm
    pid, se = world.phone()
    link = Batches(se)
    assert tsm.run(_job(tsm, pid, 0), link).results["open-session"]["scp"] == "11a"
    assert link.ins[:2] == [[0xA4, 0xCA], [0x2A, 0x82]]  # SELECT + BF21, then PSO + MUTUAL AUTHENTICATE
    # a refused certificate is named the same way when its answer came in a batch
    other = world.make_tsm(oce=lab_oce(world.home.parent / "another-operator"))
    pid, se = world.phone()
    with pytest.raises(SecureChannelError, match="refused the TSM's certificate 1"):
        other.run(_job(other, pid, 0), Batches(se))


def test_the_tsm_needs_roots_for_scp11a():
    with pytest.raises(ValueError, match="needs se_roots"):
        Tsm(None, InMemoryMasterKey(MASTER), oce=object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs the TSM's OCE"):
        Tsm(None, InMemoryMasterKey(MASTER), se_roots=(), require_scp11a=True)  # type: ignore[arg-type]


def test_the_api_makes_phones_with_and_without_scp11a(tmp_path):
    from fastapi.testclient import TestClient

    from issuer.api.auth import create_token
    from mcred.context import Context
    from mcred.service import create_app

    ctx = Context.open(tmp_path / "api")
    h = {"Authorization": f"Bearer {create_token(ctx.sessions, ['tsm'])[1]}"}
    with TestClient(create_app(ctx)) as c:
        both = c.post("/phones", headers=h, json={}).json()["id"]
        only_b = c.post("/phones", headers=h, json={"scp11a": False}).json()["id"]
        bad = c.post("/phones", headers=h, json={"scp11a": "yes"})
        assert bad.status_code == 422
        keys = {p: [k["scp"] for k in c.get(f"/phones/{p}", headers=h).json()["secure_element"]
                    ["security_domains"][0]["scp11_keys"]] for p in (both, only_b)}
    assert keys == {both: ["11a", "11b", "CA-KLOC"], only_b: ["11b"]}


def test_openssl_verifies_the_tsms_oce_certificate_against_its_kloc_ca(tmp_path):
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("no openssl binary")
    home = tmp_path / "op"
    lab_oce(home)
    d = home / "tsm-oce"
    out = subprocess.run(["openssl", "verify", "-CAfile", str(d / "ca.pem"), str(d / "oce.pem")],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0 and out.stdout.strip().endswith(": OK"), out.stdout + out.stderr
    text = subprocess.run(["openssl", "x509", "-in", str(d / "oce.pem"), "-noout", "-ext", "keyUsage"],
                          capture_output=True, text=True, check=True).stdout
    assert "Key Agreement" in text
    assert oct((d / "oce-key.pem").stat().st_mode & 0o777) == "0o600"
    assert oct((d / "ca-key.pem").stat().st_mode & 0o777) == "0o600"


def test_a_forged_6a88_that_downgrades_to_scp11b_gains_nothing(world):
    """Someone on the link answers 6A88 for the SE's SCP11a key, so the TSM meets the SE with
    SCP11b: the SE, whose issuer named the OCEs that may load keys, refuses the PUT KEY
    under SCP11b, and keeps its factory keys; nothing secret reached the link."""
    tsm = world.tsm
    pid, se = world.phone()

    def downgrade(apdu: bytes) -> bytes:
        if apdu[1:4] == bytes.fromhex("CABF21") and bytes.fromhex("830211") in apdu:
            return b"\x6a\x88"  # "no SCP11a key here"
        return se.transmit(apdu)

    with pytest.raises(CardStatusError, match="PUT KEY refused under SCP11b, though .* forged on the link"):
        tsm.run(_job(tsm, pid), downgrade)
    assert world.keysets(pid) == ["30"]
    assert "scp11a-not-offered" in _events(tsm, pid)
