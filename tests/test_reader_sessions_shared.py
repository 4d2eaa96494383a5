"""A reader session opened by one worker of the issuer service continues on another.

``uvicorn --workers N`` gives each worker its own app; a client whose three requests (open,
SessionData, result) arrive on different connections may meet a different worker each time.
Here two app instances share one database (SQLite file or PostgreSQL schema), as two
workers do, and a presentation opens on A, sends its SessionData to B and reads the
verdict on A: deterministic, where the kernel's choice of worker is not."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from fastapi.testclient import TestClient

from issuer.api.auth import create_token
from mcred.context import Context
from mcred.db import make_engine, migrate
from mcred.service import create_app
from protocols import cbor
from protocols.cose import CoseKey
from protocols.mdoc import (
    Check,
    SessionData,
    SessionEncryption,
    SessionEstablishment,
    SessionTranscript,
    VerificationResult,
)
from reader.http import ReaderService
from reader.session import DEFAULT_REQUEST as REQUEST
from reader.session import ReaderSession
from reader.sessions import ReaderSessionRow
from wallet_sim.engagement import Engagement

#: every answer a TestClient gets held to its app's OpenAPI document, refusals too
pytestmark = pytest.mark.usefixtures("every_answer_checked")


@pytest.fixture
def workers(home: Path, db_url: str):
    """Two apps over one installation and database, and a token of scope ``reader``."""
    a, b = Context.open(home, database=db_url), Context.open(home, database=db_url)
    _, token = create_token(a.sessions, ["reader"], "two-workers")
    headers = {"Authorization": f"Bearer {token}"}
    clients = [TestClient(create_app(ctx, job_workers=1), headers=headers) for ctx in (a, b)]
    yield clients
    for ctx in (a, b):
        ctx.engine.dispose()


def _wallet_reply(engagement: Engagement, establishment: bytes, plaintext: bytes) -> bytes:
    """The wallet's SessionData: ``plaintext`` encrypted under this session's SKDevice."""
    est = SessionEstablishment.decode(establishment)
    transcript = SessionTranscript.build(engagement.bytes, est.e_reader_key_bytes, None)
    crypto = SessionEncryption.for_mdoc(engagement.e_device_private_key, est.e_reader_key, transcript)
    assert crypto.decrypt(est.data)  # the reader's DeviceRequest, under SKReader
    return SessionData(data=crypto.encrypt(plaintext)).encode()


def test_a_session_opened_on_one_worker_continues_on_another(workers, home, db_url):
    a, b = workers
    engagement = Engagement.new()
    r = a.post("/reader/sessions", content=engagement.uri.encode())
    assert r.status_code == 201
    sid = r.headers["x-session-id"]
    # the row holds the EReaderKey sealed under the installation's reader key, which both
    # workers read from <home>/reader/session.key (private)
    (row,) = [x for x in _rows_of(db_url) if x.id == sid]
    assert row.e_reader_key[:1] == b"\x01"
    assert (home / "reader" / "session.key").stat().st_mode & 0o777 == 0o600
    assert b.get(f"/reader/sessions/{sid}/result").status_code == 409  # B knows it, pending
    reply = _wallet_reply(engagement, r.content, b"\xa0")  # decrypts; not a DeviceResponse
    r = b.post(f"/reader/sessions/{sid}", content=reply)
    assert r.status_code == 200 and SessionData.decode(r.content).status == 20
    verdict = a.get(f"/reader/sessions/{sid}/result")
    assert verdict.status_code == 200 and verdict.headers["content-type"] == "application/json"
    assert verdict.content == b.get(f"/reader/sessions/{sid}/result").content
    checks = verdict.json()["checks"]
    # B decrypted the wallet's message with the keys A derived: the session check passed
    assert checks[0] == {"name": "session", "passed": True,
                         "reason": "SessionData decrypted (AES-256-GCM, SKDevice)", "code": "ok"}
    assert verdict.json()["valid"] is False
    # the message again, on either worker: the session has ended, nothing is verified again
    for client in (a, b):
        r = client.post(f"/reader/sessions/{sid}", content=reply)
        assert r.status_code == 200 and SessionData.decode(r.content).status == 20
        assert client.get(f"/reader/sessions/{sid}/result").content == verdict.content
    assert a.post("/reader/sessions/nope", content=reply).status_code == 404
    assert b.get("/reader/sessions/nope/result").status_code == 404


def test_an_online_session_opened_on_one_worker_continues_on_another(workers, monkeypatch):
    """Annex C through the issuer service's reader (scope reader): its origin is that of
    MCRED_PUBLIC_URL; the HPKE key sealed in the row like an EReaderKey, opened by the other
    worker."""
    from protocols.mdoc import dcapi

    a, b = workers
    assert TestClient(a.app).post("/reader/online/sessions").status_code == 401
    r = a.post("/reader/online/sessions")
    assert r.status_code == 201
    opened = r.json()
    assert opened["origin"] == "http://127.0.0.1:8470"
    request = dcapi.DcApiRequest.parse(opened["request"])
    transcript = dcapi.session_transcript(request.encryption_info, opened["origin"])
    sealed = dcapi.seal(b"\xa0", request.encryption_info, transcript)  # opens; not a DeviceResponse
    r = b.post(f"/reader/online/sessions/{opened['session']}", json=dcapi.response_json(sealed))
    assert r.status_code == 200
    checks = r.json()["checks"]
    assert checks[0]["name"] == "session" and checks[0]["passed"], checks[0]
    assert r.json()["valid"] is False
    assert a.get(f"/reader/sessions/{opened['session']}/result").content == r.content
    # and with OpenID4VP 1.0: the request names the service's origin's transcript key
    r = a.post("/reader/online/sessions", params={"protocol": "openid4vp-v1-unsigned"})
    assert r.status_code == 201 and r.json()["request"]["protocol"] == "openid4vp-v1-unsigned"


def test_a_cross_device_session_of_the_issuer_service_takes_the_phones_post_without_a_token(workers):
    """The wallet-facing routes of a cross-device session are public under /reader (a phone
    has no token; the session id is the capability): opened on A with scope reader, the
    phone's form posted to B with no credentials, the verdict read on A."""
    from urllib.parse import parse_qs, urlsplit

    a, b = workers
    assert TestClient(a.app).post("/reader/online/sessions", params={"protocol": "openid4vp-cross-device"}
                                  ).status_code == 401
    r = a.post("/reader/online/sessions", params={"protocol": "openid4vp-cross-device"})
    assert r.status_code == 201, r.text
    opened = r.json()
    sid, request = opened["session"], opened["request"]
    assert request["response_uri"] == f"http://127.0.0.1:8470/reader/oid4vp/responses/{sid}"
    assert request["client_id"] == "redirect_uri:" + request["response_uri"]  # no reader certificate: unsigned
    state = parse_qs(urlsplit(request["uri"]).query)["state"][0]
    phone = TestClient(b.app)  # no Authorization header
    assert phone.get(f"/reader/oid4vp/requests/{sid}").status_code == 404  # by value: nothing to fetch
    r = phone.post(f"/reader/oid4vp/responses/{sid}", data={"error": "access_denied", "state": state})
    assert r.status_code == 200 and r.json() == {}
    verdict = a.get(f"/reader/sessions/{sid}/result").json()
    assert verdict["valid"] is False and "access_denied" in verdict["checks"][0]["reason"]
    assert TestClient(a.app).get(f"/reader/sessions/{sid}/result").status_code == 401  # the verdict is not public


# -- the store itself ------------------------------------------------------------------------


class StepClock:
    def __init__(self) -> None:
        self.now = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now


class NoVerifier:
    """The verdict of a plaintext that is no DeviceResponse: no pipeline needed."""

    def verify(self, response, **kwargs):
        return VerificationResult((Check("response_status", False, f"{len(response)} byte(s), not verified"),))


def _service(engine, clock, **kwargs) -> ReaderService:
    return ReaderService(NoVerifier(), [REQUEST], engine=engine, clock=clock, **kwargs)


def _rows_of(url: str) -> list:
    engine = make_engine(url)
    try:
        return _rows(engine)
    finally:
        engine.dispose()


def _rows(engine) -> list:
    t = ReaderSessionRow.__table__
    with engine.connect() as conn:
        return conn.execute(sa.select(t.c.id, t.c.state, t.c.e_reader_key).order_by(t.c.created_at)).all()


def test_the_message_is_verified_once_and_the_key_erased_when_done(engine, tmp_path):
    clock = StepClock()
    a, b = _service(engine, clock, save_dir=tmp_path), _service(engine, clock)
    engagement = Engagement.new()
    sid, establishment = a.open(engagement.uri)
    (row,) = _rows(engine)
    assert row.state == "awaiting_response" and row.e_reader_key  # PKCS#8 until the end
    session = b.store.claim(sid, clock())
    assert isinstance(session, ReaderSession)
    assert a.store.claim(sid, clock()) == "processing" and b.store.claim(sid, clock()) == "processing"
    assert a.verdict(sid) is False and a.outcome(sid) is False
    # the claimed session decrypts the wallet's first message: counters as start() left them
    reply = _wallet_reply(engagement, establishment, b"\xa0")
    assert session.receive(reply).result.checks[0].passed
    # while B holds it, the same message on A is not verified a second time
    assert SessionData.decode(a.message(sid, reply)).status == 20
    assert a.verdict(sid) is False and not (tmp_path / f"{sid}.cbor").exists()


def test_db_and_memory_stores_give_the_same_verdict_bytes_and_saved_transcript(engine, tmp_path):
    clock = StepClock()
    verdicts = []
    for store_engine, save in ((None, tmp_path / "mem"), (engine, tmp_path / "db")):
        service = ReaderService(NoVerifier(), [REQUEST], engine=store_engine, clock=clock, save_dir=save)
        engagement = Engagement.new()
        sid, establishment = service.open(engagement.bytes)
        reply = _wallet_reply(engagement, establishment, b"\xa0")
        assert SessionData.decode(service.message(sid, reply)).status == 20
        verdicts.append(service.verdict(sid))
        saved = cbor.loads((save / f"{sid}.cbor").read_bytes())
        assert saved["deviceResponse"] == b"\xa0"
        key = serialization.load_der_private_key(saved["eReaderPrivateKey"], None)
        transcript = SessionTranscript.decode(saved["sessionTranscript"])
        assert transcript.device_engagement_bytes == engagement.bytes
        assert transcript.e_reader_key_bytes == CoseKey.from_public_key(key.public_key()).encode()
        assert SessionData.decode(service.message(sid, reply)).status == 20  # replayed: same end
        assert service.verdict(sid) == verdicts[-1]
    assert verdicts[0] == verdicts[1] and json.loads(verdicts[0])["checks"][0]["passed"]
    assert [r.state for r in _rows(engine)] == ["done"] and _rows(engine)[0].e_reader_key is None


def test_db_sessions_expire_after_the_ttl_and_the_oldest_go_past_the_limit(engine):
    clock = StepClock()
    service = _service(engine, clock, max_sessions=3)
    sids = []
    for _ in range(4):
        sids.append(service.open(Engagement.new().uri)[0])
        clock.now += dt.timedelta(seconds=1)
    assert [r.id for r in _rows(engine)] == sids[1:]  # at most 3: the first one dropped
    assert service.verdict(sids[0]) is None and service.message(sids[0], b"\xa0") is None
    assert service.verdict(sids[1]) is False
    clock.now += service.session_ttl - dt.timedelta(seconds=3)  # sids[1] is 5 min old now
    assert service.verdict(sids[1]) is None and service.message(sids[1], b"\xa0") is None
    assert service.verdict(sids[3]) is False
    service.open(Engagement.new().uri)  # opening prunes the expired rows
    assert [r.id for r in _rows(engine)][:2] == sids[2:]
    assert len(_rows(engine)) == 3


def test_a_garbage_message_ends_a_db_session_with_a_failed_session_check(engine):
    clock = StepClock()
    service = _service(engine, clock)
    sid, _ = service.open(Engagement.new().uri)
    assert SessionData.decode(service.message(sid, b"\x00garbage")).status == 20
    verdict = json.loads(service.verdict(sid))
    assert verdict["valid"] is False and verdict["checks"][0]["name"] == "session"
    assert not verdict["checks"][0]["passed"] and service.outcome(sid) is True


def test_workers_racing_for_one_message_verify_it_once(db_url):
    """Eight workers (engines of their own) claim one session at the same moment: the
    conditional UPDATE gives it to exactly one."""
    import threading

    engines = [make_engine(db_url) for _ in range(8)]
    migrate(engines[0])
    clock = StepClock()
    services = [_service(e, clock) for e in engines]
    sid, _ = services[0].open(Engagement.new().uri)
    barrier = threading.Barrier(len(services))
    got = [None] * len(services)

    def claim(i: int) -> None:
        barrier.wait()
        got[i] = services[i].store.claim(sid, clock())

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(len(services))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for e in engines:
        e.dispose()
    assert sum(isinstance(g, ReaderSession) for g in got) == 1
    assert sorted(g for g in got if isinstance(g, str)) == ["processing"] * (len(services) - 1)


def test_ids_no_session_can_have_are_unknown_not_a_database_error(workers):
    """Path ids with odd characters or a kilobyte answer 404 like any unknown session, on the
    message and the result route. An id with a NUL (PostgreSQL text refuses it) is refused
    as a bad request before any route runs, as a NUL anywhere in a URL is (specs/api.md)."""
    a, _ = workers
    for sid in ("%E2%98%83", "x" * 1024, "a.b"):
        assert a.post(f"/reader/sessions/{sid}", content=b"\xa0").status_code == 404
        assert a.get(f"/reader/sessions/{sid}/result").status_code == 404
    for sid in ("%00", "a%00b"):
        for r in (a.post(f"/reader/sessions/{sid}", content=b"\xa0"),
                  a.get(f"/reader/sessions/{sid}/result")):
            assert r.status_code == 400
            assert r.headers["content-type"].startswith("application/problem+json")
            assert r.json()["type"] == "/problems/bad-request"
            assert "NUL" in r.json()["detail"]
