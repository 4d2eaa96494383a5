"""Rotating the KLOC CA (GPCS Amendment F; specs/tsm.md "Rotating the KLOC CA"): the CA that
certifies the TSMs allowed to load keys is replaced (its key leaked, or it is due). The SE
names its CA (GET DATA FF33) and takes a new one by PUT KEY KID 10 and STORE DATA of its
identifier; the TSM keeps its retired chains to meet SEs that still name an old CA, and moves
each SE it reaches to the new CA: whoever holds the old CA's key then loads nothing."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import event, given, settings
from hypothesis import strategies as st
from test_gp_scp11a import ISD_SELECT, _open, _pso
from test_tsm_fakes import FlakyLink
from test_tsm_jobs import SECRETS, apdu_whats, check_provisioned, engine  # noqa: F401
from test_tsm_scp11a import world  # noqa: F401

import wallet_sim
from protocols.gp.apdu import CommandApdu
from protocols.gp.errors import Scp11ProtocolError
from protocols.gp.scp11 import (
    KLOC_KID,
    ca_identifiers_data,
    ca_issuer_data,
    is_ca_issuer_data,
    parse_ca_identifiers,
    parse_ca_issuer_data,
)
from tsm.audit import audit_rows
from tsm.errors import SecureChannelError, TransportError
from tsm.oce import kloc_certificate, lab_oce, retired_oce, rotate_kloc_ca

FF33 = CommandApdu(0x80, 0xCA, 0xFF, 0x33, b"", 256).to_bytes()


def _ski(cert: x509.Certificate) -> bytes:
    return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest


def _kloc(w, pid):  # noqa: ANN001, ANN202
    keys = wallet_sim.describe(pid, w.home)["secure_element"]["security_domains"][0]["scp11_keys"]
    return next(k for k in keys if k["scp"] == "CA-KLOC")


def _events(tsm, pid):  # noqa: ANN001, ANN202
    return [r.event for r in audit_rows(tsm.engine, pid)]


def _ca(where) -> x509.Certificate:  # noqa: ANN001
    return x509.load_pem_x509_certificate((where / "tsm-oce" / "ca.pem").read_bytes())


# --- the data, pure -------------------------------------------------------------------------

def test_ca_identifiers_and_ca_issuer_data_round_trip():
    data = ca_identifiers_data([(b"\x01" * 20, KLOC_KID, 0x03)])
    assert data == bytes.fromhex("4214" + "01" * 20 + "83021003")
    assert parse_ca_identifiers(data) == ((b"\x01" * 20, KLOC_KID, 0x03),)
    assert parse_ca_identifiers(b"") == ()
    issuer = ca_issuer_data(KLOC_KID, 0x02, b"\xAB" * 20)
    assert issuer == bytes.fromhex("A61D" + "800100" + "4214" + "AB" * 20 + "83021002")
    assert is_ca_issuer_data(issuer) and parse_ca_issuer_data(issuer) == (KLOC_KID, 0x02, b"\xAB" * 20, 0)
    assert not is_ca_issuer_data(bytes.fromhex("A604830210017000"))  # an allowlist
    for bad in (bytes.fromhex("4201AA"), bytes.fromhex("8302100142"), bytes.fromhex("4200830210 01".replace(" ", ""))):
        with pytest.raises(Scp11ProtocolError):
            parse_ca_identifiers(bad)
    with pytest.raises(Scp11ProtocolError):
        ca_issuer_data(KLOC_KID, 1, b"")


def test_yubikits_ca_issuer_data_is_ours_and_it_reads_our_identifiers():
    pytest.importorskip("yubikit.securitydomain",
                        reason="yubikit not installed: pip install --no-deps yubikey-manager==5.5.1")
    from yubikit.core import Tlv
    from yubikit.core.smartcard.scp import KeyRef

    ski = bytes(range(20))
    # what yubikit's store_ca_issuer sends for a KLOC CA
    theirs = Tlv(0xA6, Tlv(0x80, b"\0") + Tlv(0x42, ski) + Tlv(0x83, KeyRef(KLOC_KID, 0x01)))
    assert theirs == ca_issuer_data(KLOC_KID, 0x01, ski)
    # how yubikit's get_supported_ca_identifiers reads FF33
    tlvs = Tlv.parse_list(ca_identifiers_data([(ski, KLOC_KID, 0x01)]))
    assert {KeyRef(tlvs[i + 1].value): tlvs[i].value for i in range(0, len(tlvs), 2)} \
        == {KeyRef(KLOC_KID, 0x01): ski}


@settings(max_examples=80, deadline=None)
@given(st.binary(max_size=80))
def test_the_ca_parsers_take_any_bytes(data):
    for parse in (parse_ca_identifiers, parse_ca_issuer_data):
        try:
            parse(data)
        except Scp11ProtocolError:
            pass


# --- the SE ---------------------------------------------------------------------------------

@pytest.fixture
def card(tmp_path):  # noqa: ANN001, ANN201
    """A factory-fresh SE whose issuer named the lab TSM's KLOC CA, and its data directory."""
    where = tmp_path / "home"
    pid = wallet_sim.create_phone(where, kloc=kloc_certificate(where).public_key())
    s = wallet_sim.open_secure_element(pid, where)
    assert s.transmit(ISD_SELECT)[-2:] == b"\x90\x00"
    return s, where


def test_the_se_names_its_kloc_ca_and_takes_a_new_one(card):
    se, home = card
    r = se.transmit(FF33)
    assert r[-2:] == b"\x90\x00" and parse_ca_identifiers(r[:-2]) == ((_ski(_ca(home)), KLOC_KID, 1),)
    host = _open(se, home)
    new_key = ec.generate_private_key(ec.SECP256R1())
    from protocols.gp.keys import put_ec_public_key_command
    from protocols.gp.scp11 import allowlist_data

    def send(cmd: CommandApdu) -> bytes:
        return host.unwrap(se.transmit(host.wrap(cmd.to_bytes())))

    assert send(CommandApdu(0x80, 0xE2, 0x90, 0, allowlist_data(KLOC_KID, 1, [5]))) == b"\x90\x00"
    point = new_key.public_key().public_bytes(serialization.Encoding.X962,
                                              serialization.PublicFormat.UncompressedPoint)
    assert send(put_ec_public_key_command(1, 2, KLOC_KID, point)) == b"\x02\x90\x00"
    # the new CA, named by RFC 5280's first method until told its own; the old allowlist gone
    method1 = x509.SubjectKeyIdentifier.from_public_key(new_key.public_key()).digest
    assert parse_ca_identifiers(send(CommandApdu(0x80, 0xCA, 0xFF, 0x33, b"", 256))[:-2]) == ((method1, KLOC_KID, 2),)
    assert send(CommandApdu(0x80, 0xE2, 0x90, 0, ca_issuer_data(KLOC_KID, 2, b"\x42" * 8))) == b"\x90\x00"
    pid = se.path.parent.name
    keys = wallet_sim.describe(pid, home)["secure_element"]["security_domains"][0]["scp11_keys"]
    assert [(k["kvn"], k["ca_ski"], k["allowlist"]) for k in keys if k["scp"] == "CA-KLOC"] == [("02", "42" * 8, None)]
    # a wrong KVN, a KLCC CA: refused, nothing changed
    before = se.path.read_bytes()
    assert send(CommandApdu(0x80, 0xE2, 0x90, 0, ca_issuer_data(KLOC_KID, 1, b"\x01" * 8)))[-2:] == b"\x6a\x88"
    assert send(CommandApdu(0x80, 0xE2, 0x90, 0, ca_issuer_data(KLOC_KID, 2, b"\x01" * 8, kind=1)))[-2:] \
        == b"\x6a\x88"
    assert se.path.read_bytes() == before
    # the chain of the old CA is refused from now on
    se.transmit(ISD_SELECT)
    assert se.transmit(_pso(lab_oce(home).certificates[0]).to_bytes())[-2:] == b"\x6a\x88"  # KVN 1 is gone
    assert se.transmit(_pso(lab_oce(home).certificates[0], kvn=2).to_bytes())[-2:] == b"\x69\x82"


def test_an_se_without_a_kloc_ca_answers_6a88(tmp_path):
    pid = wallet_sim.create_phone(tmp_path)
    s = wallet_sim.open_secure_element(pid, tmp_path)
    s.transmit(ISD_SELECT)
    assert s.transmit(FF33) == b"\x6a\x88"


# --- the TSM's credentials --------------------------------------------------------------------

def test_rotating_the_kloc_ca_keeps_the_tsm_key_and_retires_the_old_chain(tmp_path):
    home = tmp_path / "op"
    first = lab_oce(home)
    d = home / "tsm-oce"
    key_before = (d / "oce-key.pem").read_bytes()
    old_ca, new_ca = rotate_kloc_ca(home)
    assert old_ca.public_key() != new_ca.public_key() and old_ca.subject != new_ca.subject
    now = lab_oce(home)
    assert (d / "oce-key.pem").read_bytes() == key_before
    assert now.certificate.public_key() == first.certificate.public_key()
    assert now.ca_ski == _ski(new_ca) and now.is_named_by(_ski(new_ca)) and not now.is_named_by(_ski(old_ca))
    gen = d / "retired" / _ski(old_ca).hex()
    assert sorted(p.name for p in gen.iterdir()) == ["ca.pem", "oce.pem"]  # the old CA's key is gone
    assert (d / "ca-key.pem").stat().st_mode & 0o777 == 0o600
    (old,) = retired_oce(home)
    assert old.certificates == first.certificates and old.ca_ski == _ski(old_ca)
    rotate_kloc_ca(home)
    assert {c.ca_ski for c in retired_oce(home)} == {_ski(new_ca), _ski(old_ca)}
    if shutil.which("openssl"):
        out = subprocess.run(["openssl", "verify", "-CAfile", str(d / "ca.pem"), str(d / "oce.pem")],
                             capture_output=True, text=True, check=False)
        assert out.returncode == 0, out.stdout + out.stderr


def test_a_rotation_that_stopped_between_its_renames_leaves_the_old_ca(tmp_path):
    home = tmp_path / "op"
    first = lab_oce(home)
    d = home / "tsm-oce"
    os.rename(d, home / ".tsm-oce.rotating")  # what a crash after the first rename leaves
    assert lab_oce(home).certificates == first.certificates  # put back, not made anew
    assert not (home / ".tsm-oce.rotating").exists()


def test_first_uses_and_a_rotation_at_once_see_one_ca_or_the_next(tmp_path):
    """Four first uses at once make one OCE; readers during a rotation each see the old CA or
    the new one, whole (never a missing or half-written directory), and the rotation lands."""
    from concurrent.futures import ThreadPoolExecutor

    home = tmp_path / "op"
    with ThreadPoolExecutor(4) as pool:
        made = list(pool.map(lambda _: lab_oce(home).certificates, range(4)))
    assert len(set(made)) == 1
    before = lab_oce(home).ca_ski

    def read(_: int) -> tuple[bytes | None, bytes, tuple[bytes | None, ...]]:
        return (lab_oce(home).ca_ski, _ski(kloc_certificate(home)), tuple(c.ca_ski for c in retired_oce(home)))

    with ThreadPoolExecutor(4) as pool:  # each read whole: one CA or the other, and no error
        readers = [pool.submit(read, i) for i in range(200)]
        old, new = rotate_kloc_ca(home)
        seen = [f.result() for f in readers]
    assert _ski(old) == before
    assert {current for current, _, _ in seen} | {ca for _, ca, _ in seen} <= {before, _ski(new)}
    assert {retired for _, _, retired in seen} <= {(), (before,)}
    assert lab_oce(home).ca_ski == _ski(new)


# --- the TSM --------------------------------------------------------------------------------

def _job(tsm, pid, kind="provision"):  # noqa: ANN001, ANN202
    if kind == "provision":
        return tsm.create_job(pid, "provision", {"algorithm": "p384", "mdoc_count": 1}, SECRETS)
    return tsm.create_job(pid, kind)


def _rotated_tsm(w):  # noqa: ANN001, ANN202
    rotate_kloc_ca(w.home)
    return w.make_tsm(oce=lab_oce(w.home), retired_oce=retired_oce(w.home))


def test_a_provisioned_se_moves_to_the_new_ca_and_the_old_cas_key_loads_nothing(world):  # noqa: F811
    pid, card = world.phone()
    world.tsm.run(_job(world.tsm, pid), card.transmit)
    old_ca = _ca(world.home)
    old_ca_key = serialization.load_pem_private_key((world.home / "tsm-oce" / "ca-key.pem").read_bytes(), None)
    tsm = _rotated_tsm(world)
    checked = tsm.run(tsm.create_job(pid, "rotate-kloc", {"check": True}), card.transmit)
    assert checked.results["replace-kloc"] == {"kloc": "stale", "ca_ski": _ski(old_ca).hex(), "kvn": 1}
    assert _kloc(world, pid)["ca_ski"] == _ski(old_ca).hex()  # read only
    view = tsm.run(_job(tsm, pid, "rotate-kloc"), card.transmit)
    new_ski = _ski(_ca(world.home))
    assert view.results["replace-kloc"] == {"kloc": "replaced", "old_ca_ski": _ski(old_ca).hex(),
                                            "ca_ski": new_ski.hex(), "kvn": 2}
    assert _kloc(world, pid)["ca_ski"] == new_ski.hex() and _kloc(world, pid)["kvn"] == "02"
    assert "kloc-replaced" in _events(tsm, pid)
    # again: nothing to do
    assert tsm.run(_job(tsm, pid, "rotate-kloc"), card.transmit).results["replace-kloc"]["kloc"] == "current"
    # whoever kept the old CA's key mints an OCE certificate under it: the SE refuses it
    thief = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    forged = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "thief")]))
              .issuer_name(old_ca.subject).public_key(thief.public_key()).serial_number(7)
              .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=9))
              .add_extension(x509.KeyUsage(False, False, False, False, True, False, False, False, False), True)
              .sign(old_ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER))
    card.transmit(ISD_SELECT)
    assert card.transmit(_pso(forged, kvn=2).to_bytes())[-2:] == b"\x69\x82"
    # the TSM's keys on the SE still open: it provisions again (a refresh) as before
    assert tsm.run(tsm.create_job(pid, "refresh-mdoc", {"mdoc_count": 1}), card.transmit).state == "done"


def test_a_factory_fresh_se_of_the_old_ca_is_met_with_the_retired_chain_and_moved(world):  # noqa: F811
    pid, card = world.phone()  # made before the rotation: its SE names the old CA
    tsm = _rotated_tsm(world)
    view = tsm.run(_job(tsm, pid), card.transmit)
    assert view.state == "done" and view.results["open-session"]["scp"] == "11a"
    check_provisioned(world, pid, mdoc_count=1)
    assert _kloc(world, pid)["ca_ski"] == _ski(_ca(world.home)).hex()
    whats = apdu_whats(tsm.engine, pid)
    assert whats[:9] == ["SELECT ISD", "GET DATA SE certificate (BF21, SCP11a)", "GET DATA CA-KLOC identifiers (FF33)",
                         "PERFORM SECURITY OPERATION (TSM certificate 1 of 1)", "MUTUAL AUTHENTICATE (SCP11a)",
                         "GET DATA CA-KLOC identifiers (FF33)", "PUT KEY CA-KLOC (KID 10, KVN 02)",
                         "STORE DATA CA-KLOC identifier", "PUT KEY replace 30 by 31"]
    # a phone made after it names the new CA: the current chain, no move
    pid2, se2 = world.phone()
    tsm.run(_job(tsm, pid2), se2.transmit)
    assert "PUT KEY CA-KLOC (KID 10, KVN 02)" not in apdu_whats(tsm.engine, pid2)
    assert "kloc-replaced" not in _events(tsm, pid2)


def test_lost_answer_at_each_command_of_a_moved_first_contact_completes_once(world):  # noqa: F811
    moved = ["SELECT ISD", "GET DATA SE certificate (BF21, SCP11a)", "GET DATA CA-KLOC identifiers (FF33)",
             "PERFORM SECURITY OPERATION", "MUTUAL AUTHENTICATE", "GET DATA FF33", "PUT KEY CA-KLOC",
             "STORE DATA CA-KLOC identifier", "PUT KEY replace 30 by 31", "SELECT ISD", "INITIALIZE UPDATE"]
    phones = [world.phone() for _ in range(len(moved) + 1)]  # stock from before the rotation
    tsm = _rotated_tsm(world)
    for k, (pid, card) in enumerate(phones):
        job = _job(tsm, pid)
        with pytest.raises(TransportError):
            tsm.run(job, FlakyLink(card, lose_at=k))
        assert tsm.run(job, card.transmit).state == "done", f"lost answer {k}"
        check_provisioned(world, pid, mdoc_count=1)
        assert _kloc(world, pid)["ca_ski"] == _ski(_ca(world.home)).hex(), f"lost answer {k}"


def test_an_se_naming_none_of_the_tsms_cas_is_refused_before_any_certificate(world, tmp_path):  # noqa: F811
    from tsm.jobs import Tsm
    from tsm.keys import InMemoryMasterKey
    from wallet_sim.se.maker import root_path

    elsewhere = tmp_path / "elsewhere"
    pid, card = world.phone(home=elsewhere)  # its SE names another operator's KLOC CA
    rotate_kloc_ca(world.home)
    roots = x509.load_pem_x509_certificates(root_path(elsewhere).read_bytes())
    tsm = Tsm(world.tsm.engine, InMemoryMasterKey(bytes(16)), se_roots=roots, oce=lab_oce(world.home),
              retired_oce=retired_oce(world.home))
    before = card.path.read_bytes()
    with pytest.raises(SecureChannelError, match="certifies none of this TSM's chains"):
        tsm.run(_job(tsm, pid), card.transmit)
    assert card.path.read_bytes() == before
    assert not any(w.startswith("PERFORM SECURITY OPERATION") for w in apdu_whats(tsm.engine, pid))
    assert "oce-refused" in _events(tsm, pid)


def test_without_its_retired_chains_the_tsm_cannot_meet_an_se_of_the_old_ca(world):  # noqa: F811
    pid, card = world.phone()
    rotate_kloc_ca(world.home)
    tsm = world.make_tsm(oce=lab_oce(world.home))  # retired chains not given
    with pytest.raises(SecureChannelError, match="refused the TSM's certificate 1"):
        tsm.run(_job(tsm, pid), card.transmit)
    assert "GET DATA CA-KLOC identifiers (FF33)" not in apdu_whats(tsm.engine, pid)  # one chain: nothing to choose


def test_the_rotate_kloc_job_needs_an_oce_identity_and_leaves_an_se_without_kloc_alone(world):  # noqa: F811
    from tsm.errors import JobError

    pid, card = world.phone(kloc=False)
    tsm = world.tsm
    tsm.run(_job(tsm, pid), card.transmit)
    assert tsm.run(_job(tsm, pid, "rotate-kloc"), card.transmit).results["replace-kloc"] == {"kloc": "none"}
    bare = world.make_tsm()
    with pytest.raises(JobError, match="no OCE identity"):
        bare.run(_job(bare, pid, "rotate-kloc"), card.transmit)


# --- the command line -------------------------------------------------------------------------

def test_mcred_rotates_the_kloc_ca_and_moves_the_ses(home, tmp_path):
    """`mcred tsm oce-ca --rotate`, then `mcred tsm rotate-kloc --all`: the provisioned phone
    is moved by a job, the phone from stock at its first contact; both then name the new CA."""
    import json

    from conftest import person
    from test_provision_e2e import HOLDER
    from typer.testing import CliRunner

    from mcred.cli.main import app

    run = CliRunner()
    holder, other = tmp_path / "holder.json", tmp_path / "other.json"  # two phones, two people
    holder.write_text(json.dumps(HOLDER, ensure_ascii=False), encoding="utf-8")
    other.write_text(json.dumps(person(HOLDER), ensure_ascii=False), encoding="utf-8")

    def phone() -> str:
        r = run.invoke(app, ["phone", "new", "--json"])
        assert r.exit_code == 0, r.output
        return json.loads(r.stdout)["id"]

    def names(pid: str) -> str:
        keys = wallet_sim.describe(pid, home)["secure_element"]["security_domains"][0]["scp11_keys"]
        return next(k["ca_ski"] for k in keys if k["scp"] == "CA-KLOC")

    used, stock = phone(), phone()
    r = run.invoke(app, ["tsm", "rotate-kloc", "--phone", stock])  # never keyed: nothing to move yet
    assert r.exit_code == 2 and "has not keyed" in r.stderr
    assert run.invoke(app, ["provision", "--phone", used, "--holder", str(holder)]).exit_code == 0
    before = run.invoke(app, ["tsm", "oce-ca"]).stdout
    r = run.invoke(app, ["tsm", "oce-ca", "--rotate"])
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("-----BEGIN CERTIFICATE-----") and r.stdout != before
    assert "retired" in r.stderr and "rotate-kloc --all" in r.stderr
    new_ski = _ski(x509.load_pem_x509_certificate(r.stdout.encode())).hex()
    assert names(used) != new_ski and names(stock) != new_ski
    # the inventory first: which SEs a leaked key still opens, nothing changed
    old_ski = names(used)
    r = run.invoke(app, ["tsm", "rotate-kloc", "--all", "--check", "--json"])
    assert r.exit_code == 0, r.output
    assert [(m["phone"], m["kloc"], m["ca_ski"]) for m in json.loads(r.stdout)["checked"]] == [(used, "stale", old_ski)]
    assert names(used) == old_ski
    said = " ".join(run.invoke(app, ["tsm", "rotate-kloc", "--phone", used, "--check"]).stdout.split())
    assert "not the current one" in said and "(read-only job " in said  # a job all the same: said so
    r = run.invoke(app, ["tsm", "rotate-kloc", "--all", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert [(m["phone"], m["kloc"], m["ca_ski"]) for m in out["moved"]] == [(used, "replaced", new_ski)]
    assert out["failed"] == [] and names(used) == new_ski
    # the stock phone: provisioned now, met with the retired chain and moved at first contact
    assert run.invoke(app, ["provision", "--phone", stock, "--holder", str(other)]).exit_code == 0
    assert names(stock) == new_ski
    r = run.invoke(app, ["tsm", "rotate-kloc", "--phone", stock, "--phone", used])
    assert r.exit_code == 0 and r.stdout.count("already names KLOC CA") == 2, r.output
    assert run.invoke(app, ["tsm", "rotate-kloc"]).exit_code == 2
    doctor = json.loads(run.invoke(app, ["doctor", "--json"]).stdout)
    first = next(f for f in doctor["findings"] if f["name"] == "TSM first contact")
    assert "1 retired KLOC CA(s)" in first["detail"]
    r = run.invoke(app, ["tsm", "rotate-kloc", "--phone", used, "--phone", "ph-000000000000"])
    assert r.exit_code == 2 and "no phone ph-000000000000" in r.stderr


def test_a_phone_in_its_holders_hands_is_moved_over_the_air(tmp_path, monkeypatch):
    """`mcred tsm rotate-kloc --phone ID --over-the-air`: the phone is not in the operator's
    data directory; its agent carries the rotate-kloc job's APDUs (GP SERAM)."""
    import json

    from test_seram import PhoneThread, _free_listen
    from typer.testing import CliRunner

    from mcred.cli.main import app
    from mcred.context import Context
    from tsm.jobs import Tsm
    from wallet_sim.se.maker import root_path

    monkeypatch.setattr(os, "fsync", lambda fd: None)
    op, phone_home = tmp_path / "operator", tmp_path / "phone-home"
    monkeypatch.setenv("MCRED_HOME", str(op))
    monkeypatch.delenv("MCRED_DATABASE_URL", raising=False)
    ctx = Context.open(op)
    pid = wallet_sim.create_phone(phone_home, kloc=kloc_certificate(op).public_key())
    monkeypatch.setenv("MCRED_SE_MAKER_ROOTS", str(root_path(phone_home)))
    tsm = Tsm(ctx.engine, ctx.master_key, **ctx.tsm_trust())
    se = wallet_sim.open_secure_element(pid, phone_home)
    assert tsm.run(tsm.create_job(pid, "rotate-keys"), se.transmit).state == "done"  # keyed, old CA
    run = CliRunner()
    assert run.invoke(app, ["tsm", "oce-ca", "--rotate"]).exit_code == 0
    listen = _free_listen()
    agent = PhoneThread(f"http://{listen}/gp/seram", pid, phone_home)
    agent.start_session("kloc-move-1")
    r = run.invoke(app, ["tsm", "rotate-kloc", "--phone", pid, "--over-the-air", "--listen", listen,
                         "--session-id", "kloc-move-1", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout[r.stdout.index("\n") + 1:])
    assert [(m["phone"], m["kloc"]) for m in out["moved"]] == [(pid, "replaced")]
    assert agent.join().notifications == ["rotate-kloc/done/OK"]
    keys = wallet_sim.describe(pid, phone_home)["secure_element"]["security_domains"][0]["scp11_keys"]
    assert next(k["ca_ski"] for k in keys if k["scp"] == "CA-KLOC") == _ski(_ca(op)).hex()
    r = run.invoke(app, ["tsm", "rotate-kloc", "--all", "--over-the-air"])
    assert r.exit_code == 2 and "not --all" in r.stderr


def test_the_api_rotates_the_kloc_ca_and_moves_a_phone(home):
    """POST /trust/kloc-rotation, then POST /kloc-moves (a job): operator scope only."""
    from documented import check_every_answer
    from fastapi.testclient import TestClient
    from test_api_flows import HOLDER, _wait

    from issuer.api.auth import create_token
    from mcred.context import Context
    from mcred.service import create_app

    ctx = Context.open(home)
    tok = {s: {"Authorization": f"Bearer {create_token(ctx.sessions, [s])[1]}"} for s in ("tsm", "issuer", "operator")}
    app = create_app(ctx, job_workers=1)
    with TestClient(app) as c:
        checked = check_every_answer(c, app)
        phone = c.post("/phones", headers=tok["tsm"], json={}).json()["id"]
        r = c.post("/provisioning", headers=tok["issuer"], json={
            "phone_id": phone, "holder": HOLDER, "key_type": "p384", "mdoc_batch": 1,
            "pin": "4321", "password": "FLOW42", "puk": "87654321"})
        assert _wait(c, tok["issuer"], r.json()["id"])["state"] == "succeeded"
        assert c.post("/trust/kloc-rotation", headers=tok["tsm"]).status_code == 403
        r = c.post("/trust/kloc-rotation", headers=tok["operator"])
        assert r.status_code == 200, r.text
        rotated = r.json()
        assert rotated["certificate"].startswith("-----BEGIN CERTIFICATE-----")
        assert rotated["ca_ski"] == _ski(_ca(home)).hex() != rotated["retired_ca_ski"]
        assert "POST /trust/kloc-rotation 200" in checked  # the KlocRotation the document declares
        assert c.post("/kloc-moves", headers=tok["issuer"], json={"phone_id": phone}).status_code == 403
        assert c.post("/kloc-moves", headers=tok["operator"], json={"phone_id": "ph-000000000000"}).status_code == 404
        assert c.post("/kloc-moves", headers=tok["operator"], json={"phone_id": phone, "x": 1}).status_code == 422
        fresh = c.post("/phones", headers=tok["tsm"], json={}).json()["id"]  # never keyed: nothing to move
        for ota in (False, True):
            r = c.post("/kloc-moves", headers=tok["operator"], json={"phone_id": fresh, "over_the_air": ota})
            assert r.status_code == 422 and "has not keyed" in r.json()["detail"], r.text
        r = c.post("/kloc-moves", headers=tok["operator"], json={"phone_id": phone, "check": True})
        assert _wait(c, tok["operator"], r.json()["id"])["result"]["kloc"] == "stale"
        r = c.post("/kloc-moves", headers=tok["operator"], json={"phone_id": phone})
        assert r.status_code == 202
        job = _wait(c, tok["operator"], r.json()["id"])
        assert job["state"] == "succeeded", job["error"]
        assert job["result"]["kloc"] == "replaced" and job["result"]["ca_ski"] == rotated["ca_ski"]
    keys = wallet_sim.describe(phone, home)["secure_element"]["security_domains"][0]["scp11_keys"]
    assert next(k["ca_ski"] for k in keys if k["scp"] == "CA-KLOC") == rotated["ca_ski"]


def test_over_a_pipelining_link_the_ca_the_se_names_rides_with_select(world):  # noqa: F811
    """While the TSM holds retired chains, GET DATA FF33 goes with SELECT and BF21: a CA
    rotation costs a first contact over the air no round trip."""
    from test_seram import Batches

    (pid, card), *others = [world.phone() for _ in range(3)]  # all name the CA about to be retired
    tsm = _rotated_tsm(world)
    link = Batches(card)
    view = tsm.run(_job(tsm, pid), link)
    assert view.state == "done" and view.results["open-session"]["scp"] == "11a"
    # SELECT + BF21 + FF33, then PSO + MUTUAL AUTHENTICATE, then in the session FF33, then
    # PUT KEY of the CA-KLOC key with the STORE DATA naming it: two exchanges for the move
    assert link.ins[:4] == [[0xA4, 0xCA, 0xCA], [0x2A, 0x82], [0xCA], [0xD8, 0xE2]], link.ins[:6]
    assert _kloc(world, pid)["ca_ski"] == _ski(_ca(world.home)).hex()
    # the answers to that first exchange lost (the SE took the commands): the job resumes
    for lost, (pid2, card2) in enumerate(others):
        job = _job(tsm, pid2)
        with pytest.raises(TransportError):
            tsm.run(job, Batches(card2, lose=lost))
        assert tsm.run(job, Batches(card2)).state == "done", f"lost exchange {lost}"
        assert _kloc(world, pid2)["ca_ski"] == _ski(_ca(world.home)).hex()


# --- the SE under fuzzing --------------------------------------------------------------------

def _near_ca_command():  # noqa: ANN202 - a hypothesis strategy
    """STORE DATA naming a CA, PUT KEY of a CA-KLOC key and GET DATA FF33, each part right
    three times in four, else wrong or random: they reach the checks behind the parsers,
    and some are taken."""
    from protocols.gp.tlv import encode

    def mostly(valid, other):  # noqa: ANN001, ANN202
        return st.one_of(st.just(valid), st.just(valid), st.just(valid), other)

    byte = st.integers(0, 255)
    ref = st.tuples(mostly(KLOC_KID, st.sampled_from([0x11, 0x13]) | byte), mostly(1, st.just(2) | byte))
    issuer = st.tuples(mostly(0, st.just(1) | byte), mostly(b"\x42" * 20, st.binary(max_size=40)), ref).map(
        lambda t: encode(0xA6, encode(0x80, bytes([t[0]])) + encode(0x42, t[1]) + encode(0x83, bytes(t[2]))))
    real = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    off_curve = b"\x04" + bytes(64)
    put = st.tuples(mostly(2, st.integers(1, 0x7F) | byte),
                    mostly(real, st.just(off_curve) | st.binary(max_size=70)),
                    mostly(b"\xf0\x01\x00", st.sampled_from([b"\xf0\x01\x03", b""])),
                    mostly(b"\x00", st.sampled_from([b"", b"\x00\x00"]))
                    ).map(lambda t: bytes([t[0]]) + encode(0xB0, t[1]) + t[2] + t[3])
    return st.one_of(
        st.tuples(st.just(0xE2), mostly(0x90, st.sampled_from([0x80, 0x00])), mostly(0x00, st.just(0x01)),
                  mostly(None, st.binary(max_size=50)), issuer).map(lambda t: (t[0], t[1], t[2], t[3] or t[4])),
        st.tuples(st.just(0xD8), mostly(0x01, st.sampled_from([0x00, 0x02]) | byte), mostly(KLOC_KID, byte), put),
        st.tuples(st.just(0xCA), st.just(0xFF), mostly(0x33, byte), st.binary(max_size=4)),
    )


@settings(max_examples=150, deadline=None, suppress_health_check=list(__import__("hypothesis").HealthCheck))
@given(command=_near_ca_command())
def test_ca_kloc_commands_answer_a_status_and_refusals_change_nothing(tmp_path_factory, command):
    """Inside an SCP03 session at SL 33 on an SE whose issuer named a KLOC CA: a status word
    for every command, never an exception; a refusal leaves the persisted image as it was;
    whatever it took, the SE still answers FF33 with one CA."""
    from test_se_runtime import open_se, session

    home = tmp_path_factory.mktemp("kloc-fuzz")
    pid = wallet_sim.create_phone(home, kloc=kloc_certificate(home).public_key())
    se = open_se(pid, home)
    host = session(se, level=0x33)
    ins, p1, p2, data = command
    plain = bytes([0x80, ins, p1, p2, len(data)]) + data + b"\x00" if data else bytes([0x80, ins, p1, p2, 0x00])
    image = se.path.read_bytes()
    answer = host.unwrap(se.transmit(host.wrap(plain)))
    sw = int.from_bytes(answer[-2:], "big")
    event(f"{ins:02X} {sw:04X}")
    assert sw != 0x6F00, "the SE failed inside"
    if sw != 0x9000:
        assert se.path.read_bytes() == image, f"refused with {sw:04X} but the image changed"
    again = wallet_sim.open_secure_element(pid, home)
    again.transmit(ISD_SELECT)
    r = again.transmit(FF33)
    assert r[-2:] == b"\x90\x00" and len(parse_ca_identifiers(r[:-2])) == 1
