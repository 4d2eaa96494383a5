"""The TSM's safety nets: one lock per SE, sequence counter regression, keyset rollback,
diversification, and decoders that fail only with the package's error."""

from __future__ import annotations

import os
import shutil
import threading
import time

import pytest
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.cmac import CMAC
from hypothesis import given, settings
from hypothesis import strategies as st
from test_tsm_fakes import FakeIssuer
from test_tsm_jobs import MASTER, engine, world  # noqa: F401 - fixtures

import wallet_sim
from tsm import applets as ap
from tsm.audit import audit_rows
from tsm.errors import (
    CardDataError,
    KeysetRollbackError,
    LockBusyError,
    LockLostError,
    MasterKeyError,
    MasterKeyMismatchError,
    SeQuarantinedError,
    SequenceCounterRegressionError,
    TsmError,
)
from tsm.gp_commands import parse_dgis, parse_status
from tsm.keys import FileMasterKey, InMemoryMasterKey, diversify
from tsm.lock import acquire

assert FakeIssuer


def test_lock_excludes_a_second_worker(engine):  # noqa: F811
    a = acquire(engine, "se-1", "worker-a", timeout_s=1)
    got: list[object] = []

    def other():
        try:
            got.append(acquire(engine, "se-1", "worker-b", timeout_s=0.3))
        except LockBusyError as exc:
            got.append(exc)

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert isinstance(got[0], LockBusyError)
    a.release()
    b = acquire(engine, "se-1", "worker-b", timeout_s=1)
    assert b.token > a.token
    b.release()


def test_two_threads_never_interleave_sessions(world):  # noqa: F811
    pid, se = world.phone()
    jobs = [world.tsm.create_job(pid, "rotate-keys") for _ in range(2)]
    order: list[str] = []
    guard = threading.Lock()

    def slow(apdu: bytes) -> bytes:
        with guard:
            order.append(threading.current_thread().name)
        time.sleep(0.003)
        return se.transmit(apdu)

    threads = [threading.Thread(target=world.tsm.run, args=(j, slow), name=f"w{i}")
               for i, j in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(world.tsm.job(j).state == "done" for j in jobs)
    switches = sum(1 for x, y in zip(order, order[1:], strict=False) if x != y)
    assert switches == 1, order  # one worker's whole run, then the other's


def test_an_expired_lease_is_taken_over_and_the_old_holder_stops(engine):  # noqa: F811
    now = [1000.0]
    a = acquire(engine, "se-2", "a", lease_s=5, clock=lambda: now[0])
    now[0] += 10
    if engine.dialect.name == "postgresql":  # a row lock does not expire: it waits
        with pytest.raises(LockBusyError):
            acquire(engine, "se-2", "b", timeout_s=0.2, clock=lambda: now[0])
        a.release()
        return
    b = acquire(engine, "se-2", "b", timeout_s=0.2, clock=lambda: now[0])
    with pytest.raises(LockLostError):
        a.check()
    b.release()


def _se_file(home, pid):
    return home / "phones" / pid / "se.cbor"


def _rolled_back(w, pid, saved: bytes):  # noqa: ANN001, ANN202
    """The phone's SE image put back to ``saved`` (a backup restored, or a clone), reopened."""
    _se_file(w.home, pid).write_bytes(saved)
    return wallet_sim.open_secure_element(pid, w.home)


def test_counter_regression_is_flagged_and_audited(world):  # noqa: F811
    pid, se = world.phone()
    world.tsm.run(world.tsm.create_job(pid, "rotate-keys"), se.transmit)
    saved = _se_file(world.home, pid).read_bytes()
    world.tsm.run(world.tsm.create_job(pid, "rotate-keys"), se.transmit)
    se = _rolled_back(world, pid, saved)  # the SE is rolled back (or a clone)
    job = world.tsm.create_job(pid, "rotate-keys")
    with pytest.raises(SequenceCounterRegressionError) as e:
        world.tsm.run(job, se.transmit)
    assert e.value.seen <= e.value.last
    events = [r.event for r in audit_rows(world.tsm.engine, pid)]
    assert "counter-regression" in events
    with pytest.raises(SeQuarantinedError):
        world.tsm.run(job, se.transmit)
    world.tsm.clear_quarantine(pid, "operator", "investigated")
    assert "quarantine-cleared" in [r.event for r in audit_rows(world.tsm.engine, pid)]
    from tsm import records

    assert records.load(world.tsm.engine, pid).kvn == 0x31  # not sent back to the factory keys
    assert world.tsm.run(job, se.transmit).state == "done"  # the SE as it is now is accepted
    assert world.tsm.run(world.tsm.create_job(pid, "rotate-keys"), se.transmit).state == "done"


def test_an_se_rolled_back_further_is_usable_once_cleared(world):  # noqa: F811
    """An SE image restored from several sessions back answers counters below the baseline
    for as many sessions: clearing forgets the baseline, so the next session sets it again
    (before, each new attempt was one more regression until the card caught up)."""
    pid, se = world.phone()
    world.tsm.run(world.tsm.create_job(pid, "rotate-keys"), se.transmit)
    saved = _se_file(world.home, pid).read_bytes()
    for _ in range(4):
        world.tsm.run(world.tsm.create_job(pid, "rotate-keys"), se.transmit)
    se = _rolled_back(world, pid, saved)
    job = world.tsm.create_job(pid, "rotate-keys")
    with pytest.raises(SequenceCounterRegressionError):
        world.tsm.run(job, se.transmit)
    world.tsm.clear_quarantine(pid, "operator", "restored from a backup on purpose")
    assert world.tsm.run(job, se.transmit).state == "done"


def test_factory_keys_back_is_a_keyset_rollback(world):  # noqa: F811
    pid, se = world.phone()
    saved = _se_file(world.home, pid).read_bytes()
    world.tsm.run(world.tsm.create_job(pid, "rotate-keys"), se.transmit)
    se = _rolled_back(world, pid, saved)
    job = world.tsm.create_job(pid, "rotate-keys")
    with pytest.raises(KeysetRollbackError):
        world.tsm.run(job, se.transmit)
    assert "keyset-rollback" in [r.event for r in audit_rows(world.tsm.engine, pid)]
    with pytest.raises(SeQuarantinedError):
        world.tsm.run(job, se.transmit)
    # the operator finds the phone was reset on purpose: cleared, the SE is keyed again (it
    # stayed quarantined for good before: every session met the factory keys again)
    world.tsm.clear_quarantine(pid, "operator", "reset by its owner")
    from tsm import records

    assert records.load(world.tsm.engine, pid).kvn == 0x30  # keyed again by the next job
    assert world.tsm.run(job, se.transmit).state == "done"
    assert records.load(world.tsm.engine, pid).kvn == 0x31
    assert world.tsm.run(world.tsm.create_job(pid, "rotate-keys"), se.transmit).state == "done"


def test_only_a_quarantined_se_is_cleared_and_with_a_reason(world):  # noqa: F811
    from tsm.errors import JobInputError

    pid, se = world.phone()
    with pytest.raises(JobInputError, match="no record"):
        world.tsm.clear_quarantine(pid, "operator", "checked")
    world.tsm.run(world.tsm.create_job(pid, "rotate-keys"), se.transmit)
    with pytest.raises(JobInputError, match="not quarantined"):
        world.tsm.clear_quarantine(pid, "operator", "checked")
    with pytest.raises(JobInputError, match="reason"):
        world.tsm.clear_quarantine(pid, "operator", " ")
    assert "quarantine-cleared" not in [r.event for r in audit_rows(world.tsm.engine, pid)]


def test_another_master_key_is_named_before_any_cryptogram_is_tried(world):  # noqa: F811
    """A TSM whose master key is not the one that diversified the SE's keyset (another
    installation's, or a store switched from file to token) says so, naming both key ids,
    and sends the SE nothing: no INITIALIZE UPDATE, so no failed authentication counts."""
    from tsm.jobs import Tsm

    pid, se = world.phone()
    world.tsm.run(world.tsm.create_job(pid, "rotate-keys"), se.transmit)
    other = Tsm(world.tsm.engine, InMemoryMasterKey(bytes(range(16))), issuer=world.issuer, actor="test-op")
    sent: list[bytes] = []

    def transmit(apdu: bytes) -> bytes:
        sent.append(apdu)
        return se.transmit(apdu)

    before = se.state["failed_authentications"]
    with pytest.raises(MasterKeyMismatchError) as e:
        other.run(other.create_job(pid, "rotate-keys"), transmit)
    assert world.tsm.master.key_id in str(e.value) and other.master.key_id in str(e.value)
    assert not any(a[1] == 0x50 for a in sent)  # no INITIALIZE UPDATE reached the SE
    assert se.state["failed_authentications"] == before
    assert "master-key-mismatch" in [r.event for r in audit_rows(world.tsm.engine, pid)]
    world.tsm.run(world.tsm.create_job(pid, "rotate-keys"), se.transmit)  # the right key still opens it


def test_diversification_matches_sp800_108_and_separates_roles_and_ses():
    kdd = bytes.fromhex("4D4353457004A0AF2BCD")
    keys = diversify(MASTER, kdd)
    for role, got in (("ENC", keys.enc), ("MAC", keys.mac), ("DEK", keys.dek)):
        c = CMAC(algorithms.AES(MASTER))  # counter 01 || label || 00 || context || L (32 bits)
        c.update(b"\x01" + b"mcred-tsm/" + role.encode() + b"\x00" + kdd + (128).to_bytes(4, "big"))
        assert got == c.finalize()
    assert len({keys.enc, keys.mac, keys.dek}) == 3
    assert diversify(MASTER, bytes(10)).enc != keys.enc


def test_file_master_key_is_private_and_stable(tmp_path):
    a = FileMasterKey(tmp_path / "tsm" / "master.key")
    b = FileMasterKey(tmp_path / "tsm" / "master.key")
    assert a.key_id == b.key_id and oct(os.stat(a.path).st_mode & 0o777) == "0o600"
    assert a.path.read_text().strip() not in repr(a)
    sealed = a.seal(b"pin", b"job")
    assert b.unseal(sealed, b"job") == b"pin"
    with pytest.raises(TsmError):
        InMemoryMasterKey(bytes(16)).unseal(sealed, b"job")
    shutil.rmtree(tmp_path / "tsm")


@pytest.mark.parametrize(("make", "why"), [
    (lambda p: p.write_text("zz\n"), "not hex"),
    (lambda p: p.write_bytes(b"\xff\xfe"), "cannot be made or read"),
    (lambda p: p.mkdir(), "cannot be made or read"),  # a directory where the file should be
    (lambda p: p.parent.chmod(0o500), "cannot be made or read"),  # nowhere to make it
    (lambda p: p.write_text("00" * 7 + "\n"), "7 bytes"),
])
def test_a_bad_master_key_file_is_a_master_key_error_naming_it(tmp_path, make, why):
    path = tmp_path / "tsm" / "master.key"
    path.parent.mkdir()
    make(path)
    try:
        if os.geteuid() == 0 and why == "cannot be made or read" and not path.exists():
            pytest.skip("root writes into a read-only directory")
        with pytest.raises(MasterKeyError, match=why) as err:
            FileMasterKey(path)
        assert "master key" in str(err.value)
    finally:
        path.parent.chmod(0o700)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_decoders_fail_only_with_card_data_error(data):
    for parse in (parse_dgis, parse_status, ap.parse_jpki_state, ap.parse_mdoc_state,
                  ap.parse_mdoc_keys, ap.parse_jpki_key):
        try:
            parse(data)
        except CardDataError:
            pass
