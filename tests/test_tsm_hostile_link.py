"""A link that corrupts one answer of the SE (a flipped bit, a cut, other bytes), or one
command on its way, at any point of a provisioning job, on SQLite and PostgreSQL: the TSM
stops with one of its own errors and no other exception, its job row stays in a state it
can act on, and once the link is honest again the job completes with exactly one key pair
per slot and one applet each, or (a refusal it cannot judge safe to retry) stays failed
without having issued anything twice, and the SE is never quarantined. (The PostgreSQL run found an audit text longer than
its column, which SQLite stores and PostgreSQL refuses.)"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_tsm_jobs import check_provisioned, engine, provision, world  # noqa: F401 - fixtures

from tsm import records
from tsm.audit import audit_rows
from tsm.errors import SecureChannelError, TsmError


class CorruptingLink:
    """Passes every command to the SE; the answer to command ``at`` (or, with
    ``command=True``, that command on its way to the SE) is changed by ``damage``."""

    def __init__(self, se, at: int, damage, *, command: bool = False) -> None:  # noqa: ANN001
        self.se, self.at, self.damage, self.command, self.sent = se, at, damage, command, 0

    def __call__(self, apdu: bytes) -> bytes:
        n = self.sent
        self.sent += 1
        if n == self.at and self.command:
            apdu = self.damage(apdu)
        answer = self.se.transmit(apdu)
        return self.damage(answer) if n == self.at and not self.command else answer


def _flip(bit: int):
    def damage(answer: bytes) -> bytes:
        out = bytearray(answer)
        i = bit % (len(out) * 8)
        out[i // 8] ^= 1 << (i % 8)
        return bytes(out)
    return damage


_DAMAGE = st.one_of(
    st.integers(0, 4096).map(_flip),
    st.integers(0, 8).map(lambda keep: (lambda answer: answer[:keep])),
    st.binary(max_size=40).map(lambda other: (lambda answer: other)),
)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(at=st.integers(0, 40), damage=_DAMAGE, command=st.booleans())
def test_a_corrupted_answer_stops_the_job_with_a_tsm_error_and_a_retry_completes(world, at, damage, command):  # noqa: F811
    """The answer, or the command on its way (the SE must refuse it: C-MAC, or a malformed
    APDU), damaged once anywhere in the job."""
    pid, se = world.phone()
    job = provision(world, pid)
    link = CorruptingLink(se, at, damage, command=command)
    try:
        view = world.tsm.run(job, link)
    except TsmError:
        pass  # its own error, naming what was wrong
    except Exception as exc:  # noqa: BLE001 - any other exception is the failure this test looks for
        raise AssertionError(f"not a TsmError: {type(exc).__name__}: {exc}") from exc
    else:  # the damage fell after the last command, or changed nothing the TSM reads
        assert view.state == "done"
        check_provisioned(world, pid, sent_once=not command)
        return
    state = world.tsm.job(job).state
    assert state in ("interrupted", "failed"), state
    # one damaged answer or command authenticates nothing, so it never quarantines the SE
    assert records.load(world.tsm.engine, pid).state != "suspect"
    if state == "interrupted":
        assert world.tsm.run(job, se.transmit).state == "done"
        check_provisioned(world, pid, sent_once=not command)
    else:  # nothing was issued twice, whatever was issued
        assert all(n == 1 for n in world.issuer.issued.values()), world.issuer.issued


#: INITIALIZE UPDATE answer: KDD (10) | key information (3) | card challenge (8) | card
#: cryptogram (8) | sequence counter (3) | SW1 SW2
KDD_BYTE, COUNTER_BYTE = 0, 10 + 3 + 8 + 8 + 2


@pytest.mark.parametrize(("byte", "error", "event"), [
    (KDD_BYTE, None, "identity-mismatch"),  # the card authenticates: this SE, the session goes on
    (COUNTER_BYTE, SecureChannelError, "session-failed"),  # the challenge no longer matches the counter
])
def test_a_damaged_initialize_update_answer_quarantines_nothing(world, byte, error, event):  # noqa: F811
    """Neither the KDD nor the sequence counter of an INITIALIZE UPDATE answer is trusted
    before the answer authenticated. A flipped bit in either used to quarantine the SE (an
    identity mismatch, or a counter regression when the damage lowered it): anyone able to
    damage one answer could lock a phone out until an operator cleared it."""
    pid, se = world.phone()
    world.tsm.run(world.tsm.create_job(pid, "rotate-keys"), se.transmit)  # identity and counter on record
    job = world.tsm.create_job(pid, "rotate-keys")

    def damage(answer: bytes) -> bytes:  # a bit of the KDD flipped; the counter made 0
        out = bytearray(answer)
        if byte == KDD_BYTE:
            out[byte] ^= 0x01
        else:
            out[byte] = 0
        return bytes(out)

    if error is None:
        assert world.tsm.run(job, CorruptingLink(se, 1, damage)).state == "done"  # command 1: INITIALIZE UPDATE
    else:
        with pytest.raises(error):
            world.tsm.run(job, CorruptingLink(se, 1, damage))
        assert world.tsm.run(job, se.transmit).state == "done"  # not quarantined: the honest answer goes on
    events = [r.event for r in audit_rows(world.tsm.engine, pid)]
    assert event in events and "counter-regression" not in events


def test_a_kdd_damaged_at_first_contact_leaves_a_working_se(world):  # noqa: F811
    """At first contact the factory keys do not depend on the KDD, so a damaged KDD in that
    answer authenticates and is recorded; the diversified keyset is derived from it. Every
    later session then meets the true KDD in the answer: it must go on (the card holds the
    keys of the recorded KDD), not stop for ever."""
    pid, se = world.phone()
    job = provision(world, pid)
    flip = CorruptingLink(se, 1, lambda answer: bytes([answer[0] ^ 0x01]) + answer[1:])
    assert world.tsm.run(job, flip).state == "done"
    check_provisioned(world, pid)
    again = world.tsm.create_job(pid, "rotate-keys")  # a later session on keyset 31: nothing to rotate
    assert world.tsm.run(again, se.transmit).state == "done"


@pytest.mark.parametrize("where", ["answer", "command"])
def test_an_unauthenticated_keyset_not_found_quarantines_nothing(world, where):  # noqa: F811
    """SW 6A88 to INITIALIZE UPDATE on the diversified keyset is the sign of a rolled-back
    or replaced SE, but a status word authenticates nothing: a link that forges it, or
    damages the command's key version number so that the SE answers it, used to quarantine
    the SE until an operator cleared it. The TSM now asks for the factory keyset: only a
    card that authenticates with it (the SE reset to factory keys) is a keyset rollback."""
    pid, se = world.phone()
    world.tsm.run(world.tsm.create_job(pid, "rotate-keys"), se.transmit)  # on keyset 31 now
    job = world.tsm.create_job(pid, "rotate-keys")
    if where == "answer":
        link = CorruptingLink(se, 1, lambda answer: bytes.fromhex("6A88"))
    else:  # P1, the key version number, 31 -> 32: the SE itself answers 6A88
        link = CorruptingLink(se, 1, lambda apdu: apdu[:2] + b"\x32" + apdu[3:], command=True)
    with pytest.raises(SecureChannelError, match="6A88"):
        world.tsm.run(job, link)
    events = [r.event for r in audit_rows(world.tsm.engine, pid)]
    assert "keyset-unknown" in events and "keyset-rollback" not in events
    assert world.tsm.run(job, se.transmit).state == "done"  # not quarantined
