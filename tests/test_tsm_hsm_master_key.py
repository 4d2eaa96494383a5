"""The TSM master key in a PKCS#11 token (tsm/hsm.py), against SoftHSM2: the SE keysets the
token derives (SP 800-108 around the token's CKM_AES_CMAC) equal ``diversify`` of the same
key value (cryptography's KBKDFCMAC); job secrets sealed and opened with CKM_AES_GCM in the
token, tampering refused; the keys never leave the token; typed refusals; and a phone
provisioned with ``MCRED_TSM_MASTER_KEY=pkcs11`` and no master key file, whose SE then opens
SCP03 with the keyset the token derives for it, and with nothing else."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import contextmanager

import pytest
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.cmac import CMAC
from softhsm import SOFTHSM_PIN as PIN
from sqlalchemy import select
from typer.testing import CliRunner

import wallet_sim
from hsm import SOFTHSM2, TokenError, close_all
from protocols.gp.scp03 import HostChannel, Scp03Error, StaticKeys
from tsm.db import SecureElementRow
from tsm.errors import MasterKeyError, SealError
from tsm.hsm import MASTER_LABEL, SEAL_LABEL, HsmMasterKey
from tsm.keys import FACTORY_KEYS, InMemoryMasterKey, diversify, kbkdf_cmac, kbkdf_counter

pkcs11 = pytest.importorskip("pkcs11", reason="needs python-pkcs11 (the test extra installs it)")
A = pkcs11.Attribute
KDDS = [bytes.fromhex("4D4353457004A0AF2BCD"), bytes(10), b"\xff" * 10, os.urandom(10)]
ISD = bytes.fromhex("A000000151000000")


def _cmac(key: bytes, data: bytes) -> bytes:
    c = CMAC(algorithms.AES(key))
    c.update(data)
    return c.finalize()


def _import_key(token: str, value: bytes, label: str = MASTER_LABEL, attrs: dict | None = None) -> None:
    """Put a known AES key into the token as an operator would (C_CreateObject), sensitive."""
    template = {A.CLASS: pkcs11.ObjectClass.SECRET_KEY, A.KEY_TYPE: pkcs11.KeyType.AES,
                A.VALUE: value, A.LABEL: label, A.TOKEN: True, A.PRIVATE: True,
                A.SENSITIVE: True, A.EXTRACTABLE: False, A.SIGN: True, **(attrs or {})}
    t = pkcs11.lib(SOFTHSM2).get_token(token_label=token)
    try:
        session = t.open(user_pin=PIN, rw=True)
    except pkcs11.exceptions.UserAlreadyLoggedIn:  # this process is: a second session needs no PIN
        session = t.open(rw=True)
    with session:
        session.create_object(template)


@contextmanager
def _login(token: str):
    """A separate login, as another process would have: ``find(label)`` -> secret keys."""
    close_all()
    with pkcs11.lib(SOFTHSM2).get_token(token_label=token).open(user_pin=PIN) as session:
        yield lambda label: list(session.get_objects({A.CLASS: pkcs11.ObjectClass.SECRET_KEY,
                                                      A.LABEL: label}))


def test_the_kdf_loop_around_a_cmac_is_kbkdfcmac():
    """No token needed: the counter-mode loop the HSM runs, with cryptography's CMAC as the
    PRF, gives cryptography's KBKDFCMAC for every length and key size."""
    for size in (16, 24, 32):
        key = os.urandom(size)
        for length in (1, 15, 16, 17, 24, 32, 33, 64):
            assert kbkdf_counter(lambda d, k=key: _cmac(k, d), b"mcred-tsm/ENC", KDDS[0], length) \
                == kbkdf_cmac(key, b"mcred-tsm/ENC", KDDS[0], length)
    with pytest.raises(MasterKeyError, match="out of range"):
        kbkdf_counter(lambda d: bytes(16), b"l", b"c", 0)


@pytest.mark.parametrize("size", [16, 24, 32])
def test_keysets_derived_in_the_token_equal_the_file_derivation(softhsm_token, size):
    known = os.urandom(size)
    _import_key(softhsm_token, known)
    key = HsmMasterKey(SOFTHSM2, softhsm_token, PIN)
    for kdd in KDDS:
        assert key.se_keys(kdd) == diversify(known, kdd)
    # key_id is a check value made in the token: CMAC(master, "mcred-tsm/key-id"), 8 bytes
    assert key.key_id == _cmac(known, b"mcred-tsm/key-id")[:8].hex()
    # ... which the file store computes too: the same key has the same name in either store
    assert key.key_id == InMemoryMasterKey(known).key_id
    assert f"AES-{8 * size}" in key.describe() and known.hex() not in repr(key)
    with pytest.raises(MasterKeyError, match="9 bytes, expected 10"):
        key.se_keys(bytes(9))


def test_keys_are_born_in_the_token_found_again_and_never_leave(softhsm_token):
    first = HsmMasterKey(SOFTHSM2, softhsm_token, PIN)
    kdd = KDDS[0]
    keys, sealed = first.se_keys(kdd), first.seal(b'{"pin": "1234"}', b"job-1")
    with _login(softhsm_token) as find:
        (master,), (seal,) = find(MASTER_LABEL), find(SEAL_LABEL)
        assert master[A.VALUE_LEN] == 16 and seal[A.VALUE_LEN] == 32  # AES-128 as the file default
        for key in (master, seal):
            assert key[A.TOKEN] and key[A.PRIVATE] and key[A.SENSITIVE] and not key[A.EXTRACTABLE]
            assert not any(key[a] for a in (A.WRAP, A.UNWRAP, A.DERIVE, A.VERIFY))
            with pytest.raises(pkcs11.exceptions.PKCS11Error):
                key[A.VALUE]  # noqa: B018 - the token refuses to reveal it
        # one purpose per key: the master key only CMACs, the sealing key only en/decrypts
        assert master[A.SIGN] and not master[A.ENCRYPT] and not master[A.DECRYPT]
        assert seal[A.ENCRYPT] and seal[A.DECRYPT] and not seal[A.SIGN]
    close_all()
    again = HsmMasterKey(SOFTHSM2, softhsm_token, PIN)  # a new login: found again by label
    assert again.key_id == first.key_id and again.se_keys(kdd) == keys
    assert again.unseal(sealed, b"job-1") == b'{"pin": "1234"}'
    assert keys != diversify(bytes(16), kdd) and len({keys.enc, keys.mac, keys.dek}) == 3


def test_sealing_in_the_token_round_trips_and_refuses_tampering(softhsm_token):
    known = os.urandom(16)
    _import_key(softhsm_token, known)
    key = HsmMasterKey(SOFTHSM2, softhsm_token, PIN)
    plain = b'{"user_auth_pin": "1234", "signing_password": "ABC123", "puk": "12345678"}'
    sealed = key.seal(plain, b"job-7")
    assert len(sealed) == 12 + len(plain) + 16  # nonce || ciphertext || tag, as the file key's
    assert plain not in sealed and key.seal(plain, b"job-7")[:12] != sealed[:12]
    assert key.unseal(sealed, b"job-7") == plain
    for i in (0, 11, 12, len(sealed) - 17, len(sealed) - 16, len(sealed) - 1):  # nonce, body, tag
        bad = bytearray(sealed)
        bad[i] ^= 0x01
        with pytest.raises(SealError, match="do not open"):
            key.unseal(bytes(bad), b"job-7")
    with pytest.raises(SealError, match="do not open"):
        key.unseal(sealed, b"job-8")  # another job's associated data
    with pytest.raises(SealError, match="too short"):
        key.unseal(sealed[:27], b"job-7")
    # the sealing key is the token's own, not derived from the master key: a blob the file
    # key sealed does not open here even with the same master key value, nor the reverse
    file_key = InMemoryMasterKey(known)
    with pytest.raises(SealError):
        key.unseal(file_key.seal(plain, b"job-7"), b"job-7")
    with pytest.raises(SealError):
        file_key.unseal(sealed, b"job-7")


def test_refusals_are_typed(softhsm_token, tmp_path, monkeypatch):
    with pytest.raises(MasterKeyError, match="PinIncorrect"):
        HsmMasterKey(SOFTHSM2, softhsm_token, "000000")
    with pytest.raises(MasterKeyError, match="NoSuchToken"):
        HsmMasterKey(SOFTHSM2, "no-such-token", PIN)
    with pytest.raises(MasterKeyError, match="MCRED_TSM_MASTER_KEY=pkcs11 needs the token's user PIN"):
        HsmMasterKey.from_env({"MCRED_PKCS11_TOKEN": softhsm_token})
    with pytest.raises(MasterKeyError, match="MCRED_PKCS11_PIN_FILE .* is unreadable"):
        HsmMasterKey.from_env({"MCRED_PKCS11_PIN_FILE": str(tmp_path / "absent")})
    def no_pkcs11(setting):
        raise TokenError(f"{setting} needs python-pkcs11")

    with monkeypatch.context() as m:
        m.setattr("tsm.hsm.pkcs11_module", no_pkcs11)
        with pytest.raises(MasterKeyError, match="MCRED_TSM_MASTER_KEY=pkcs11 needs python-pkcs11"):
            HsmMasterKey(SOFTHSM2, softhsm_token, PIN)
    with pytest.raises(MasterKeyError, match="libnothing.so"):
        HsmMasterKey.from_env({"MCRED_PKCS11_MODULE": str(tmp_path / "libnothing.so"),
                               "MCRED_PKCS11_PIN": PIN})
    # a master key an operator put in readable, or twice, is refused, not used
    _import_key(softhsm_token, os.urandom(16), label="readable", attrs={A.SENSITIVE: False, A.EXTRACTABLE: True})
    with pytest.raises(MasterKeyError, match="readable outside"):
        HsmMasterKey(SOFTHSM2, softhsm_token, PIN, label="readable")
    _import_key(softhsm_token, os.urandom(16), label="twice")
    _import_key(softhsm_token, os.urandom(16), label="twice")
    with pytest.raises(MasterKeyError, match="2 AES keys labelled 'twice'"):
        HsmMasterKey(SOFTHSM2, softhsm_token, PIN, label="twice")
    _import_key(softhsm_token, os.urandom(16), label="no-cmac", attrs={A.SIGN: False})
    with pytest.raises(MasterKeyError, match="lacks SIGN"):
        HsmMasterKey(SOFTHSM2, softhsm_token, PIN, label="no-cmac")


def test_a_key_generated_concurrently_elsewhere_wins_and_ours_is_destroyed(softhsm_token, monkeypatch):
    """Another process generates the master key between our search and our generation: we
    find two, destroy our own (never used) and use theirs, so both processes agree."""
    theirs = os.urandom(16)
    real_find, calls = HsmMasterKey._find, []

    def find(self, label):
        calls.append(label)
        if label == MASTER_LABEL and calls.count(label) == 1:
            _import_key(softhsm_token, theirs)  # lands just after our search found nothing
            return []
        return real_find(self, label)

    monkeypatch.setattr(HsmMasterKey, "_find", find)
    key = HsmMasterKey(SOFTHSM2, softhsm_token, PIN)
    assert key.se_keys(KDDS[0]) == diversify(theirs, KDDS[0])
    monkeypatch.undo()
    with _login(softhsm_token) as find:
        assert len(find(MASTER_LABEL)) == 1


def _holder(tmp_path):
    f = tmp_path / "holder.json"
    f.write_text(json.dumps({"family_name": "山田", "given_name": "太郎", "family_name_kana": "やまだ",
                             "given_name_kana": "たろう", "birth_date": "1990-04-01", "sex": 1,
                             "address": "東京都千代田区千代田1-1", "prefecture": "東京都",
                             "municipality": "千代田区", "pin": "1234", "password": "ABC123"},
                            ensure_ascii=False), encoding="utf-8")
    return f


def _opens(se, keys: StaticKeys, kvn: int) -> bool:
    """Whether the SE's ISD opens an SCP03 session (level 33) with ``keys`` as keyset ``kvn``."""
    assert se.transmit(bytes([0, 0xA4, 4, 0, len(ISD)]) + ISD)[-2:] == b"\x90\x00"
    host = HostChannel(keys, 0x33, os.urandom(8), kvn=kvn, sd_aid=ISD)
    try:
        r = se.transmit(host.on_initialize_update_response(se.transmit(host.initialize_update())))
        host.on_external_authenticate_response(r)
    except Scp03Error:
        return False
    return True


def test_provisioning_with_the_master_key_in_the_token(softhsm_token, home, monkeypatch, tmp_path):
    from mcred.cli.main import app
    from mcred.context import Context

    monkeypatch.setattr(os, "fsync", lambda fd: None)  # SE images need not hit the disk here
    monkeypatch.setenv("MCRED_TSM_MASTER_KEY", "pkcs11")
    monkeypatch.setenv("MCRED_PKCS11_TOKEN", softhsm_token)
    monkeypatch.setenv("MCRED_PKCS11_PIN", PIN)
    from mcred.health import check_master_key

    assert "none yet" in check_master_key(Context.open(home))  # the probe looks, makes nothing
    with _login(softhsm_token) as find:
        assert find(MASTER_LABEL) == [] and find(SEAL_LABEL) == []
    r = CliRunner().invoke(app, ["provision", "--phone", "new", "--holder", str(_holder(tmp_path)),
                                 "--key-type", "p384", "--mdoc-batch", "1", "--json"])
    assert r.exit_code == 0, r.output
    phone = json.loads(r.output)["phone"]
    assert not (home / "tsm" / "master.key").exists()  # no master key on disk
    ctx = Context.open(home)
    key = ctx.master_key
    assert isinstance(key, HsmMasterKey)
    with ctx.sessions() as s:
        row = s.scalars(select(SecureElementRow).where(SecureElementRow.se_id == phone)).one()
    assert row.kvn == 0x31 and row.master_key_id == key.key_id
    # the SE opens SCP03 with the keyset the token derives for its KDD, and the factory
    # keyset is gone; after a new login (another process) the token derives the same keys
    close_all()
    keys = HsmMasterKey.from_env().se_keys(bytes.fromhex(row.kdd))
    se = wallet_sim.open_secure_element(phone, home)
    assert _opens(se, keys, 0x31)
    assert not _opens(se, FACTORY_KEYS, 0x30) and not _opens(se, diversify(bytes(16), bytes.fromhex(row.kdd)), 0x31)
    assert check_master_key(Context.open(home)).startswith(f"PKCS#11 token {softhsm_token!r}, AES-128")
    # the TSM met the SE under SCP11a with its OCE key in the token, which oce.pem certifies
    from cryptography import x509

    from tsm.audit import audit_rows
    from tsm.hsm import HsmOceKey

    assert "MUTUAL AUTHENTICATE (SCP11a)" in [r.what for r in audit_rows(ctx.engine, phone)]
    oce = x509.load_pem_x509_certificate((home / "tsm-oce" / "oce.pem").read_bytes())
    assert oce.public_key() == HsmOceKey.from_env().public_key()
    # doctor reports the token's key
    r = CliRunner().invoke(app, ["doctor", "--json"])
    found = {f["name"]: f for f in json.loads(r.output)["findings"]}
    assert found["TSM master key"]["ok"] and key.key_id in found["TSM master key"]["detail"]


def test_an_unreachable_master_key_is_one_line_and_exit_2(softhsm_token, home, tmp_path):
    env = {**os.environ, "MCRED_TSM_MASTER_KEY": "pkcs11", "MCRED_PKCS11_TOKEN": softhsm_token,
           "MCRED_PKCS11_PIN": "000000", "MCRED_HOME": str(home)}
    pid = wallet_sim.create_phone(home)
    out = subprocess.run([sys.executable, "-m", "mcred", "provision", "--phone", pid, "--holder",
                          str(_holder(tmp_path))], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.strip().count("\n") == 0 and "Traceback" not in out.stderr
    assert out.stderr.startswith("error: TSM master key: PKCS#11 token") and "PinIncorrect" in out.stderr
    from issuer.db import Holder, Phone
    from mcred.context import Context

    with Context.open(home).sessions() as s:  # refused before anything was registered
        assert s.scalars(select(Holder)).all() == [] and s.get(Phone, pid) is None
    env["MCRED_TSM_MASTER_KEY"] = "vault"
    out = subprocess.run([sys.executable, "-m", "mcred", "provision", "--phone", pid, "--holder",
                          str(_holder(tmp_path))], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 2 and out.stderr.strip() == \
        "error: TSM master key: MCRED_TSM_MASTER_KEY='vault': use file or pkcs11"


def test_a_file_master_key_moves_into_the_token_and_its_phones_follow(softhsm_token, home, monkeypatch, tmp_path):
    """``mcred tsm import-master-key``: an installation that provisioned a phone with the
    file key (recorded, as earlier releases did, under the key's SHA-256 name) moves the key
    into the token; with MCRED_TSM_MASTER_KEY=pkcs11 and no key file the TSM then refreshes
    that phone's mdoc over SCP03, the job secrets the file key sealed open in the token, and
    the token refuses a second import. Before the import, the token's own fresh key is
    named as the wrong one (MasterKeyMismatchError), not tried."""
    from sqlalchemy import update

    from mcred.cli.main import app
    from mcred.context import Context
    from mcred.provision import refresh_mdocs
    from tsm.errors import MasterKeyMismatchError
    from tsm.keys import default_master_key

    monkeypatch.setattr(os, "fsync", lambda fd: None)
    monkeypatch.setenv("MCRED_PKCS11_TOKEN", softhsm_token)
    monkeypatch.setenv("MCRED_PKCS11_PIN", PIN)
    ctx = Context.open(home)
    file_key = default_master_key(home)
    phone = wallet_sim.create_phone(home)
    r = CliRunner().invoke(app, ["provision", "--phone", phone, "--holder", str(_holder(tmp_path)),
                                 "--key-type", "p384", "--mdoc-batch", "1"])
    assert r.exit_code == 0, r.output
    (legacy,) = file_key.also_known_as
    with ctx.engine.begin() as conn:  # as a phone provisioned by an earlier release is recorded
        conn.execute(update(SecureElementRow).where(SecureElementRow.se_id == phone)
                     .values(master_key_id=legacy))
    sealed = file_key.seal(b"job secrets", b"job-1")

    # a token with a key of its own is not the key that diversified this phone
    monkeypatch.setenv("MCRED_TSM_MASTER_KEY", "pkcs11")
    with pytest.raises(MasterKeyMismatchError, match=legacy):
        refresh_mdocs(Context.open(home), phone)
    close_all()
    monkeypatch.delenv("MCRED_TSM_MASTER_KEY")
    r = CliRunner().invoke(app, ["tsm", "import-master-key"])
    assert r.exit_code == 2 and "already holds" in r.output  # the token's own key is in the way
    # a fresh token: the import goes through
    close_all()
    subprocess.run(["softhsm2-util", "--delete-token", "--token", softhsm_token], check=True, capture_output=True)
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", softhsm_token, "--so-pin", "13579135",
                    "--pin", PIN], check=True, capture_output=True)
    close_all()
    pkcs11.lib(SOFTHSM2).reinitialize()
    r = CliRunner().invoke(app, ["tsm", "import-master-key", "--remove-file"])
    assert r.exit_code == 0, r.output
    assert f"key_id {file_key.key_id}" in r.output and "1 SE record(s) renamed" in r.output
    assert not (home / "tsm" / "master.key").exists()
    with _login(softhsm_token) as find:
        (master,) = find(MASTER_LABEL)
        assert master[A.SENSITIVE] and not master[A.EXTRACTABLE]
    monkeypatch.setenv("MCRED_TSM_MASTER_KEY", "pkcs11")
    ctx = Context.open(home)
    token_key = ctx.master_key
    assert isinstance(token_key, HsmMasterKey) and token_key.key_id == file_key.key_id
    assert token_key.unseal(sealed, b"job-1") == b"job secrets"
    done = refresh_mdocs(ctx, phone)  # SCP03 with the keyset the token derives
    assert len(done.issued) == 1
    r = CliRunner().invoke(app, ["tsm", "import-master-key"])
    assert r.exit_code == 2 and "no file master key" in r.output


def test_the_oce_key_in_the_token_agrees_and_stays_there(softhsm_token, monkeypatch):
    from cryptography.hazmat.primitives.asymmetric import ec

    from tsm.hsm import OCE_LABEL, HsmOceKey

    monkeypatch.setenv("MCRED_PKCS11_TOKEN", softhsm_token)
    monkeypatch.setenv("MCRED_PKCS11_PIN", PIN)
    key = HsmOceKey.from_env()  # generated on first use
    peer = ec.generate_private_key(ec.SECP256R1())
    assert key.exchange(peer.public_key()) == peer.exchange(ec.ECDH(), key.public_key())
    close_all()
    again = HsmOceKey.from_env()  # another login finds the same pair
    assert again.public_key() == key.public_key()
    close_all()
    with pkcs11.lib(SOFTHSM2).get_token(token_label=softhsm_token).open(user_pin=PIN) as s:
        (priv,) = s.get_objects({A.CLASS: pkcs11.ObjectClass.PRIVATE_KEY, A.LABEL: OCE_LABEL})
        assert priv[A.SENSITIVE] and not priv[A.EXTRACTABLE] and priv[A.DERIVE] and not priv[A.SIGN]
        # no shared secret is left behind on the token
        assert not list(s.get_objects({A.CLASS: pkcs11.ObjectClass.SECRET_KEY}))


def test_rotating_the_kloc_ca_certifies_the_tokens_oce_key(softhsm_token, monkeypatch, tmp_path):
    """`mcred tsm oce-ca --rotate` under MCRED_TSM_MASTER_KEY=pkcs11: the new CA certifies the
    key in the token (a file key would be another), and the retired chain shows it too."""
    from cryptography import x509

    from tsm.hsm import HsmOceKey
    from tsm.oce import lab_oce, retired_oce, rotate_kloc_ca

    monkeypatch.setenv("MCRED_PKCS11_TOKEN", softhsm_token)
    monkeypatch.setenv("MCRED_PKCS11_PIN", PIN)
    home = tmp_path / "op"
    key = HsmOceKey.from_env()
    first = lab_oce(home, key)
    assert first.certificate.public_key() == key.public_key()
    old, new = rotate_kloc_ca(home, key)
    now = lab_oce(home, key)
    assert now.certificate.public_key() == key.public_key() and now.certificate.issuer == new.subject
    (retired,) = retired_oce(home, key)
    assert retired.certificate.issuer == old.subject and retired.certificates == first.certificates
    assert x509.load_pem_x509_certificate((home / "tsm-oce" / "oce.pem").read_bytes()).issuer == new.subject
