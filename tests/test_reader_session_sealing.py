"""The EReaderKey a reader session keeps in the database is sealed (AES-256-GCM under the
service's session key, the session id as associated data): whoever reads the database
alone learns no session key; workers sharing the key continue each other's sessions; a
row that does not open ends as a failed verdict that says why, never as an error."""

from __future__ import annotations

import json
import os
import stat

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from test_reader_sessions_shared import NoVerifier, StepClock, _wallet_reply

from mcred.present import ReaderServeConfig, ReaderServeError, session_sealer
from protocols.mdoc import SessionData
from reader.errors import ReaderSessionError
from reader.http import ReaderService
from reader.session import DEFAULT_REQUEST as REQUEST
from reader.sessions import AesGcmSealer, ReaderSessionRow
from wallet_sim.engagement import Engagement

KEY_A, KEY_B = bytes(range(32)), bytes(range(1, 33))


def _service(engine, key: bytes | None, clock=None) -> ReaderService:
    return ReaderService(NoVerifier(), [REQUEST], engine=engine, clock=clock or StepClock(),
                         session_sealer=AesGcmSealer(key) if key else None)


def _stored_key(engine, sid: str) -> bytes:
    t = ReaderSessionRow.__table__
    with engine.connect() as conn:
        return conn.execute(sa.select(t.c.e_reader_key).where(t.c.id == sid)).scalar_one()


def test_the_key_in_the_row_is_sealed_and_workers_sharing_the_key_continue(engine):
    clock = StepClock()
    a, b = _service(engine, KEY_A, clock), _service(engine, KEY_A, clock)
    engagement = Engagement.new()
    sid, establishment = a.open(engagement.uri)
    stored = _stored_key(engine, sid)
    assert stored[:1] == b"\x01" and len(stored) == 1 + 12 + 16 + 138  # P-256 PKCS#8 is 138 bytes
    with pytest.raises(ValueError):
        serialization.load_der_private_key(stored, None)
    reply = b.message(sid, _wallet_reply(engagement, establishment, b"\xa0"))
    assert SessionData.decode(reply).status == 20
    assert json.loads(b.verdict(sid))["checks"][0]["passed"]  # B opened A's sealed key
    assert _stored_key(engine, sid) is None  # erased when done


@pytest.mark.parametrize(("writer", "reader_key", "why"), [
    (KEY_A, KEY_B, "does not open under this reader's session key"),
    (KEY_A, None, "is sealed and this reader has no session key"),
    (None, KEY_A, "is not sealed"),
])
def test_a_row_another_key_wrote_ends_failed_with_the_reason(engine, writer, reader_key, why):
    clock = StepClock()
    sid, establishment = _service(engine, writer, clock).open(Engagement.new().uri)
    other = _service(engine, reader_key, clock)
    seen = []
    other.on_outcome = lambda outcome, seconds: seen.append(outcome.valid)
    reply = other.message(sid, b"\xa0")
    assert seen == [False]  # counted among the verdicts like any other
    assert SessionData.decode(reply).status == 20  # the wallet is told the session ended
    check = json.loads(other.verdict(sid))["checks"][0]
    assert check["name"] == "session" and not check["passed"] and why in check["reason"]


def test_a_sealed_key_moved_to_another_row_does_not_open(engine):
    service = _service(engine, KEY_A)
    first, _ = service.open(Engagement.new().uri)
    second, _ = service.open(Engagement.new().uri)
    t = ReaderSessionRow.__table__
    with engine.begin() as conn:
        conn.execute(sa.update(t).where(t.c.id == second).values(e_reader_key=_stored_key(engine, first)))
    service.message(second, b"\xa0")
    assert "another session's row" in json.loads(service.verdict(second))["checks"][0]["reason"]
    with pytest.raises(ReaderSessionError):
        AesGcmSealer(KEY_A).unseal(b"\x01" + bytes(40), b"x")


def test_the_key_file_is_made_private_once_and_read_by_every_process(tmp_path):
    path = tmp_path / "keys" / "session.key"
    a = session_sealer(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and len(path.read_text().strip()) == 64
    b = session_sealer(path)  # the same file: the same key
    assert b.unseal(a.seal(b"k", b"sid"), b"sid") == b"k"
    path.write_text("not hex\n")
    with pytest.raises(ReaderServeError, match="not hex"):
        session_sealer(path)
    path.write_text("00" * 16 + "\n")
    with pytest.raises(ReaderServeError, match="needs 32"):
        session_sealer(path)


def test_the_stand_alone_reader_seals_with_its_key_file(tmp_path, engine, db_url):
    from test_iaca_profiles import make_iaca

    _, cert = make_iaca()
    iaca = tmp_path / "iaca.pem"
    iaca.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file = tmp_path / "reader.key"
    config = ReaderServeConfig(trust=(str(iaca),), offline=True, db=db_url, session_key_file=str(key_file))
    service, _, _ = config.build()
    try:
        sid, _ = service.open(Engagement.new().uri)
        stored = _stored_key(engine, sid)
        assert session_sealer(key_file).unseal(stored, sid.encode())[:1] == b"\x30"  # the PKCS#8 key
    finally:
        service.store.engine.dispose()


def _rsa_pkcs8() -> bytes:
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=1024).private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


@pytest.mark.parametrize(("column", "value", "why"), [
    ("e_reader_key", b"\x30\x03\x02\x01\x00", "not a PKCS#8 key"),
    ("e_reader_key", b"", "not a PKCS#8 key"),
    ("e_reader_key", None, "missing from its row"),
    ("e_reader_key", "rsa", "not an EC key"),
    ("transcript", b"\x83\xf6\xf6\xf6", "resume"),
    ("transcript", b"\xff", "resume"),
], ids=["key-not-pkcs8", "key-empty", "key-missing", "key-rsa", "transcript-nulls", "transcript-not-cbor"])
def test_a_damaged_clear_row_ends_failed_and_is_not_an_error(engine, column, value, why):
    """A row damaged in the database (no sealing key, so nothing authenticates it) is a
    failed session with the reason, like a row another key wrote; never an exception."""
    service = _service(engine, None)
    sid, _ = service.open(Engagement.new().uri)
    t = ReaderSessionRow.__table__
    with engine.begin() as conn:
        conn.execute(sa.update(t).where(t.c.id == sid).values({column: _rsa_pkcs8() if value == "rsa" else value}))
    reply = service.message(sid, b"\xa0")
    assert SessionData.decode(reply).status == 20
    check = json.loads(service.verdict(sid))["checks"][0]
    assert check["name"] == "session" and not check["passed"] and why in check["reason"], check
