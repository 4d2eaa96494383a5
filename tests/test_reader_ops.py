"""The stand-alone reader's operations routes (mcred/reader_ops.py): liveness, readiness for
a load balancer (a trust anchor valid now, the sessions' database), and Prometheus metrics
that count verdicts and failed checks by name, never by reason."""

from __future__ import annotations

import datetime as dt

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from test_iaca_profiles import make_iaca
from test_present_kit import DOCTYPE, NS, reader_world

import wallet_sim
from mcred.db import branch_status, make_engine, migrate
from mcred.present import reader_app, reader_pipeline
from reader.http import ReaderService
from reader.relying_party import RelyingPartyService
from reader.session import RequestSpec
from reader.trust import TrustStore
from wallet_sim.consent import RulesConsent
from wallet_sim.engagement import Engagement
from wallet_sim.wallet import Wallet

REQUEST = RequestSpec(DOCTYPE, {NS: {"family_name": False}})


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return reader_world(tmp_path_factory.mktemp("home"))


def _samples(client: TestClient) -> dict[tuple[str, tuple], float]:
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def _present(world, client: TestClient) -> dict:
    se = wallet_sim.open_secure_element(world["phone"], world["home"])
    session = Wallet(se.transmit, RulesConsent.allow_all(), clock=world["clock"]).start()
    r = client.post("/sessions", content=session.engagement.uri.encode())
    sid = r.headers["x-session-id"]
    assert client.post(f"/sessions/{sid}", content=session.receive(r.content)).status_code == 200
    return client.get(f"/sessions/{sid}/result").json()


def test_health_readiness_and_verdicts_counted(world):
    client = TestClient(reader_app(ReaderService(world["pipeline"], [REQUEST])))
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert "1 of 1 IACA(s) valid now" in ready.json()["checks"]["trust"]["detail"]
    assert set(ready.json()["checks"]) == {"trust"}  # sessions in memory: no database to ask

    assert _present(world, client)["valid"] is True
    sid = client.post("/sessions", content=Engagement.new().uri.encode()).headers["x-session-id"]
    client.post(f"/sessions/{sid}", content=b"\xa0")  # not SessionData: a failed session check
    samples = _samples(client)
    assert samples[("mcred_reader_verdicts_total", (("valid", "true"),))] == 1
    assert samples[("mcred_reader_verdicts_total", (("valid", "false"),))] == 1
    assert samples[("mcred_reader_failed_checks_total", (("check", "session"), ("code", "session_failed")))] == 1
    assert samples[("mcred_reader_verification_seconds_count", ())] == 2
    # requests by route template, never by raw path (a session id is no label)
    assert samples[("mcred_http_requests_total", (("method", "POST"), ("route", "/sessions/{sid}"),
                                                   ("status", "200")))] == 2
    assert not any(sid in str(labels) for _, labels in samples)


def test_verdicts_are_counted_by_the_way_the_mdoc_was_presented(world):
    """mcred_reader_presentations_total{mode, valid}: proximity, and online by protocol."""
    service = ReaderService(world["pipeline"], [REQUEST], origin="https://shop.example", public_url="http://localhost")
    client = TestClient(reader_app(service), base_url="http://localhost")
    assert _present(world, client)["valid"] is True
    se = wallet_sim.open_secure_element(world["phone"], world["home"])
    wallet = Wallet(se.transmit, RulesConsent.allow_all(), clock=world["clock"])
    for protocol in ("org-iso-mdoc", "openid4vp-v1-unsigned"):
        opened = client.post("/online/sessions", params={"protocol": protocol}).json()
        answer = wallet.online("https://shop.example").respond(opened["request"])
        assert client.post(f"/online/sessions/{opened['session']}", json=answer).json()["valid"]
    opened = client.post("/online/sessions").json()  # answered for another origin: refused
    answer = wallet.online("https://relay.example").respond(opened["request"])
    assert not client.post(f"/online/sessions/{opened['session']}", json=answer).json()["valid"]
    from mcred.present import present_cross_device_over_http  # the phone scans the page's QR code

    assert present_cross_device_over_http(wallet, "http://localhost", client=client).valid
    samples = _samples(client)
    for mode, valid, count in (("proximity", "true", 1), ("org-iso-mdoc", "true", 1), ("openid4vp", "true", 1),
                               ("org-iso-mdoc", "false", 1), ("openid4vp-cross-device", "true", 1)):
        assert samples[("mcred_reader_presentations_total", (("mode", mode), ("valid", valid)))] == count


def test_a_reader_whose_every_iaca_expired_is_not_ready():
    old = dt.datetime(2001, 1, 1, tzinfo=dt.UTC)
    _, cert = make_iaca(not_before=old, not_after=old + dt.timedelta(days=365))
    store = TrustStore()
    store.add(cert, source="test")
    client = TestClient(reader_app(ReaderService(reader_pipeline(trust=store), [REQUEST])))
    r = client.get("/readyz")
    assert r.status_code == 503 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["detail"] == "not ready: trust"
    assert "none of the 1 IACA(s) is inside its validity now" in r.json()["checks"]["trust"]["detail"]
    assert client.get("/healthz").status_code == 200  # alive, just not ready
    # a relying party alone (no IACA) is ready with its roots
    rp_only = TestClient(reader_app(ReaderService(reader_pipeline(trust=TrustStore()), [REQUEST]),
                                    RelyingPartyService([cert])))
    r = rp_only.get("/readyz")
    assert r.status_code == 200 and r.json()["checks"]["trust"]["detail"] == "JPKI relying party: 1 root(s)"


def test_readiness_asks_the_sessions_database(world, db_url):
    engine = make_engine(db_url)
    try:
        service = ReaderService(world["pipeline"], [REQUEST], engine=engine)
        client = TestClient(reader_app(service))
        r = client.get("/readyz")  # the table was never made: not ready, and says why
        assert r.status_code == 503 and r.json()["detail"] == "not ready: sessions"
        assert "reader schema not at its head" in r.json()["checks"]["sessions"]["detail"]
        migrate(engine, "reader@head")
        r = client.get("/readyz")
        assert r.status_code == 200, r.json()
        head = branch_status(engine, "reader")[1]
        assert r.json()["checks"]["sessions"]["detail"].endswith(f"reader schema at {head}")
    finally:
        engine.dispose()
