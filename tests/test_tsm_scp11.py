"""The TSM's first contact under SCP11b: the SE proves itself with its maker's certificate
before it is sent anything secret, and the published factory keys are replaced under
SCP11b's session keys, so that nobody on the link learns the SE's diversified keys."""

from __future__ import annotations

import os

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from test_tsm_fakes import Crash, FakeIssuer, FlakyLink
from test_tsm_jobs import MASTER, SECRETS, apdu_whats, check_provisioned, engine  # noqa: F401

import wallet_sim
from mcred.context import ConfigError, Context
from protocols.gp.apdu import CommandApdu
from protocols.gp.keys import parse_put_key_data
from protocols.gp.scp03 import CardChannel, CardKeyset, InitializeUpdateResponse
from tsm.audit import audit_rows
from tsm.errors import SeAuthenticityError, SeIdentityError, TransportError
from tsm.jobs import Tsm
from tsm.keys import FACTORY_KEY, FACTORY_KEYS, InMemoryMasterKey
from wallet_sim.se.maker import root_path


def _roots(home):
    return x509.load_pem_x509_certificates(root_path(home).read_bytes())


@pytest.fixture
def world(engine, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setattr(os, "fsync", lambda fd: None)

    class World:
        home = tmp_path / "home"
        issuer = FakeIssuer()

        def phone(self, home=None):
            pid = wallet_sim.create_phone(home or self.home)
            return pid, wallet_sim.open_secure_element(pid, home or self.home)

        def describe(self, pid):
            return wallet_sim.describe(pid, self.home)

    w = World()
    w.phone()  # the home's first phone makes its maker
    w.tsm = Tsm(engine, InMemoryMasterKey(MASTER), issuer=w.issuer, actor="test-op", se_roots=_roots(w.home))
    return w


def provision(w, pid, mdoc_count=1):
    return w.tsm.create_job(pid, "provision", {"algorithm": "p384", "mdoc_count": mdoc_count}, SECRETS)


class Tap:
    """A transport that keeps every command and answer, as anyone on the link sees them."""

    def __init__(self, se):
        self.se, self.seen = se, []

    def __call__(self, apdu):
        resp = self.se.transmit(apdu)
        self.seen.append((apdu, resp))
        return resp


def _events(w, pid):
    return [(r.event, r.what) for r in audit_rows(w.tsm.engine, pid)]


def test_first_contact_authenticates_the_se_then_rotates_under_scp11b(world):
    pid, se = world.phone()
    view = world.tsm.run(provision(world, pid), se.transmit)
    assert view.state == "done" and view.results["open-session"]["scp"] == "11b"
    check_provisioned(world, pid, mdoc_count=1)
    whats = apdu_whats(world.tsm.engine, pid)
    assert whats[:5] == ["SELECT ISD", "GET DATA SE certificate (BF21, SCP11b)", "INTERNAL AUTHENTICATE (SCP11b)",
                         "PUT KEY replace 30 by 31", "SELECT ISD"]
    assert whats[5] == "INITIALIZE UPDATE"  # keyset 31 from then on
    ev = _events(world, pid)
    kdd = world.describe(pid)["secure_element"]["key_diversification_data"]
    assert ("se-authenticated", f"2.5.4.5={kdd},CN=SE {kdd[8:16]} SCP11b,O=mcred lab SE maker") in ev
    rows = [r for r in audit_rows(world.tsm.engine, pid) if r.event == "apdu" and r.what == "INITIALIZE UPDATE"]
    assert rows and all((r.detail or {}).get("kvn") == 0x31 for r in rows)  # never the factory keyset


def _steal_keys_scp03(seen):
    """What an eavesdropper who knows the published factory keys makes of a first contact
    under SCP03: it replays the card's side of the session and reads the PUT KEY."""
    it = iter(seen)
    for cmd, resp in it:
        if cmd[1] == 0x50 and cmd[2] == 0x30:  # INITIALIZE UPDATE on the factory keyset
            iu = InitializeUpdateResponse.parse(resp[:-2])
            card = CardChannel(CardKeyset(0x30, FACTORY_KEYS), i=iu.i, key_diversification_data=iu.key_diversification_data,
                               sd_aid=bytes.fromhex("A000000151000000"), sequence_counter=0,
                               card_challenge=iu.card_challenge)
            card.initialize_update(CommandApdu.parse(cmd))
            ea, _ = next(it)
            card.external_authenticate(CommandApdu.parse(ea))
            for c, _r in it:
                plain = card.unwrap(CommandApdu.parse(c))
                if plain.ins == 0xD8:
                    return parse_put_key_data(plain.data, FACTORY_KEY).keys
    return None


def test_nobody_on_the_link_learns_the_keys(world, engine):  # noqa: F811
    # under SCP03 with the published keys, the link reads the diversified keys...
    plain_tsm = Tsm(engine, InMemoryMasterKey(MASTER), issuer=world.issuer, actor="test-op")
    pid, se = world.phone()
    tap = Tap(se)
    plain_tsm.run(plain_tsm.create_job(pid, "provision", {"algorithm": "p384", "mdoc_count": 0}, SECRETS), tap)
    kdd = bytes.fromhex(world.describe(pid)["secure_element"]["key_diversification_data"])
    keys = world.tsm.master.se_keys(kdd)
    assert _steal_keys_scp03(tap.seen) == (keys.enc, keys.mac, keys.dek)
    # ... under SCP11b it sees ephemeral keys and ciphertext under ECDH-derived keys only
    pid, se = world.phone()
    tap = Tap(se)
    world.tsm.run(provision(world, pid, mdoc_count=0), tap)
    keys = world.tsm.master.se_keys(bytes.fromhex(world.describe(pid)["secure_element"]["key_diversification_data"]))
    assert _steal_keys_scp03(tap.seen) is None  # no session on the factory keyset to replay
    wire = b"".join(c + r for c, r in tap.seen)
    public_dek = Cipher(algorithms.AES(FACTORY_KEY), modes.ECB()).encryptor()
    for k in (keys.enc, keys.mac, keys.dek):
        assert k not in wire and public_dek.update(k) not in wire


def test_an_se_from_an_untrusted_maker_is_refused_and_sent_nothing(world, tmp_path):
    pid, se = world.phone(tmp_path / "elsewhere")  # its maker is another home's
    before = se.path.read_bytes()
    job = provision(world, pid)
    with pytest.raises(SeAuthenticityError, match="MCRED_SE_MAKER_ROOTS"):
        world.tsm.run(job, se.transmit)
    assert se.path.read_bytes() == before
    assert apdu_whats(world.tsm.engine, pid) == ["SELECT ISD", "GET DATA SE certificate (BF21, SCP11b)"]
    assert "se-authentication-failed" in [e for e, _ in _events(world, pid)]
    # trusting that maker too, the same job runs
    world.tsm.se_roots += tuple(_roots(tmp_path / "elsewhere"))
    assert world.tsm.run(job, se.transmit).state == "done"


def test_an_impostor_with_a_genuine_certificate_fails_the_receipt(world):
    genuine_pid, genuine = world.phone()
    genuine.transmit(bytes.fromhex("00A4040008A000000151000000"))
    pid, impostor = world.phone()

    def swap(apdu):  # the impostor shows the genuine SE's certificate
        if apdu[1:4] == bytes.fromhex("CABF21"):
            return genuine.transmit(apdu)
        return impostor.transmit(apdu)

    job = provision(world, pid)
    with pytest.raises(SeAuthenticityError, match="receipt does not verify"):
        world.tsm.run(job, swap)
    assert "PUT KEY replace 30 by 31" not in apdu_whats(world.tsm.engine, pid)
    assert [k["kvn"] for k in world.describe(pid)["secure_element"]["security_domains"][0]["keysets"]] == ["30"]


def test_an_se_without_scp11_is_refused_unless_factory_keys_are_allowed(world, engine, monkeypatch):  # noqa: F811
    monkeypatch.setattr(wallet_sim.phone, "se_maker", lambda home: None)  # an SE made before SCP11
    pid, se = world.phone()
    with pytest.raises(SeAuthenticityError, match="6A88 to GET DATA SE certificate.*MCRED_TSM_FIRST_CONTACT"):
        world.tsm.run(provision(world, pid), se.transmit)
    plain_tsm = Tsm(engine, InMemoryMasterKey(MASTER), issuer=world.issuer, actor="test-op")
    assert plain_tsm.run(provision(world, pid), se.transmit).state == "done"


def test_lost_answer_at_each_command_of_the_first_contact_completes_once(world):
    for k in range(9):  # SELECT, BF21, INTERNAL AUTHENTICATE, PUT KEY, SELECT, IU 31, EA, ...
        pid, se = world.phone()
        job = provision(world, pid)
        with pytest.raises(TransportError):
            world.tsm.run(job, FlakyLink(se, lose_at=k))
        assert world.tsm.run(job, se.transmit).state == "done", f"lost answer {k}"
        check_provisioned(world, pid, mdoc_count=1)


def test_crash_after_the_first_steps_completes_once(world):
    for step in ("open-session", "rotate-keys"):
        pid, se = world.phone()
        job = provision(world, pid)

        def crash(done, step=step):
            if done == step:
                raise Crash(step)

        with pytest.raises(Crash):
            world.tsm.run(job, se.transmit, after_step=crash)
        assert world.tsm.run(job, se.transmit).state == "done"
        check_provisioned(world, pid, mdoc_count=1)


def test_another_trusted_se_answering_for_a_recorded_one_is_refused(world):
    pid, se = world.phone()
    _other_pid, other = world.phone()
    job = provision(world, pid)
    with pytest.raises(TransportError):  # the record takes the SE's identity, then the link drops
        world.tsm.run(job, FlakyLink(se, lose_at=3))
    # keyset 31 landed on this SE; the other SE (genuine, trusted, still factory) answers now
    with pytest.raises(SeIdentityError, match="certificate names key diversification data"):
        world.tsm.run(job, other.transmit)


def test_the_installation_trusts_its_own_maker_and_the_ones_it_is_told(tmp_path, monkeypatch):
    ctx = Context.open(tmp_path / "op", "sqlite://")
    monkeypatch.delenv("MCRED_SE_MAKER_ROOTS", raising=False)
    monkeypatch.delenv("MCRED_TSM_FIRST_CONTACT", raising=False)
    assert ctx.se_roots == ()  # no phone made here yet: SCP11b required, nobody trusted
    wallet_sim.create_phone(ctx.home)
    wallet_sim.create_phone(tmp_path / "shop")
    assert ctx.se_roots == tuple(_roots(ctx.home))
    monkeypatch.setenv("MCRED_SE_MAKER_ROOTS", f"{root_path(tmp_path / 'shop')}{os.pathsep}")
    assert ctx.se_roots == tuple(_roots(ctx.home)) + tuple(_roots(tmp_path / "shop"))
    monkeypatch.setenv("MCRED_SE_MAKER_ROOTS", str(tmp_path / "nope.pem"))
    with pytest.raises(ConfigError, match="is not a file"):
        ctx.se_roots  # noqa: B018
    (tmp_path / "bad.pem").write_text("not a certificate")
    monkeypatch.setenv("MCRED_SE_MAKER_ROOTS", str(tmp_path / "bad.pem"))
    with pytest.raises(ConfigError, match="not PEM certificates"):
        ctx.se_roots  # noqa: B018
    monkeypatch.setenv("MCRED_TSM_FIRST_CONTACT", "factory-keys")
    assert ctx.se_roots is None
    monkeypatch.setenv("MCRED_TSM_FIRST_CONTACT", "whatever")
    with pytest.raises(ConfigError, match="use scp11, scp11a, scp11b or factory-keys"):
        ctx.se_roots  # noqa: B018


def test_the_certificate_is_judged_at_the_tsms_clock(world, engine):  # noqa: F811
    import time

    behind = Tsm(engine, InMemoryMasterKey(MASTER), issuer=world.issuer, se_roots=world.tsm.se_roots,
                 clock=lambda: time.time() - 6 * 3600)  # a TSM a few hours behind the factory
    pid, se = world.phone()
    assert behind.run(provision(world, pid, mdoc_count=0), se.transmit).state == "done"
    far = Tsm(engine, InMemoryMasterKey(MASTER), issuer=world.issuer, se_roots=world.tsm.se_roots,
              clock=lambda: time.time() + 25 * 365 * 86400)  # past the SE certificate's 20 years
    pid, se = world.phone()
    with pytest.raises(SeAuthenticityError, match="not valid at validation time"):
        far.run(provision(world, pid, mdoc_count=0), se.transmit)


def test_the_service_will_not_start_on_a_first_contact_setting_that_cannot_work(tmp_path, monkeypatch):
    from mcred.service import create_app

    monkeypatch.setenv("MCRED_SE_MAKER_ROOTS", str(tmp_path / "missing.pem"))
    with pytest.raises(ConfigError, match="MCRED_SE_MAKER_ROOTS"):
        create_app(Context.open(tmp_path / "svc", "sqlite://"))


def test_a_reset_se_is_quarantined_then_keyed_again_under_scp11b(world):
    """An SE back on its factory keys (a reset, or a restored image) is caught by the factory
    keyset probe as before; cleared by the operator, the next job meets it with SCP11b again,
    its certificate naming the KDD on record, and keys it under S-DEK."""
    from test_tsm_safety import _rolled_back, _se_file

    from tsm import records
    from tsm.errors import KeysetRollbackError

    pid, se = world.phone()
    saved = _se_file(world.home, pid).read_bytes()
    world.tsm.run(world.tsm.create_job(pid, "rotate-keys"), se.transmit)
    se = _rolled_back(world, pid, saved)
    job = world.tsm.create_job(pid, "rotate-keys")
    with pytest.raises(KeysetRollbackError):
        world.tsm.run(job, se.transmit)
    world.tsm.clear_quarantine(pid, "operator", "reset by its owner")
    assert world.tsm.run(job, se.transmit).state == "done"
    assert records.load(world.tsm.engine, pid).kvn == 0x31
    assert apdu_whats(world.tsm.engine, pid).count("INTERNAL AUTHENTICATE (SCP11b)") == 2


def test_a_certificate_that_does_not_name_ten_bytes_of_kdd_is_refused_before_authenticating(world):
    """The SE's identity for the TSM is its key diversification data, 10 bytes, which its
    maker's certificate names (subject serialNumber, 20 hex digits; specs/tsm.md "First
    contact"). A certificate from a trusted maker for the SE's own key that names 9 bytes
    is refused before INTERNAL AUTHENTICATE: the TSM would otherwise key the SE under
    diversification data that is not its own."""
    from cryptography.hazmat.primitives.serialization import Encoding

    from protocols.gp.scp11 import certificate_store_query, parse_certificate_bundle
    from wallet_sim.se.maker import se_maker

    pid, se = world.phone()
    se.transmit(bytes.fromhex("00A4040008A000000151000000"))
    r = se.transmit(CommandApdu(0x80, 0xCA, 0xBF, 0x21, certificate_store_query(), 65536).to_bytes())
    sd_key = parse_certificate_bundle(r[:-2])[-1].public_key()
    short = se_maker(world.home).certify(sd_key, bytes(9), bytes(4))
    assert x509.load_der_x509_certificate(short).public_bytes(Encoding.DER) == short

    def relabelled(apdu):
        if apdu[1:4] == bytes.fromhex("CABF21"):
            return short + b"\x90\x00"
        return se.transmit(apdu)

    with pytest.raises(SeAuthenticityError, match="key diversification data"):
        world.tsm.run(provision(world, pid), relabelled)
    assert apdu_whats(world.tsm.engine, pid) == ["SELECT ISD", "GET DATA SE certificate (BF21, SCP11b)"]


def test_a_malformed_internal_authenticate_answer_fails_the_session_named(world):
    """An answer to INTERNAL AUTHENTICATE that is not 5F49 .. 86 .. (here two stray bytes
    with 9000) fails the session with a SecureChannelError, audited; the TSM does not go on
    to record and use a session whose host never opened."""
    from tsm.errors import SecureChannelError

    pid, se = world.phone()

    def garbled(apdu):
        resp = se.transmit(apdu)
        return b"\x01\x02\x90\x00" if apdu[1] == 0x88 else resp

    with pytest.raises(SecureChannelError, match="INTERNAL AUTHENTICATE answer"):
        world.tsm.run(provision(world, pid), garbled)
    assert ("session-failed", "SCP11b") in _events(world, pid)
    assert "PUT KEY replace 30 by 31" not in apdu_whats(world.tsm.engine, pid)
