"""``GET /healthz`` and ``GET /readyz`` (mcred/health.py): public probes for process managers
and load balancers. Ready only when the database answers, its schema is at every party's
newest revision and the issuer key store opens; otherwise 503 problem+json naming the
failed checks (a real unreachable database, a real downgraded schema, a key store that
cannot open), never a stack trace."""

from __future__ import annotations

import os

import pytest
from alembic import command
from fastapi import FastAPI
from fastapi.testclient import TestClient

from issuer.api import problems
from mcred.context import Context
from mcred.db import _alembic_config, schema_status
from mcred.health import health_router
from mcred.service import create_app

#: every answer a TestClient gets held to its app's OpenAPI document, refusals too
pytestmark = pytest.mark.usefixtures("every_answer_checked")


def _probe_app(ctx: Context) -> TestClient:
    app = FastAPI()
    problems.install(app)
    app.include_router(health_router(ctx))
    return TestClient(app, raise_server_exceptions=False)


def test_live_and_ready_without_a_token(home):
    ctx = Context.open(home)
    app = create_app(ctx, job_workers=1)
    with TestClient(app) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        r = c.get("/readyz")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["status"] == "ready" and set(body["checks"]) == {"database", "schema", "keystore",
                                                                    "tsm-master-key", "reader-session-key"}
        assert all(v["ok"] for v in body["checks"].values())
        assert body["checks"]["database"]["detail"] == "sqlite"
        # a fresh installation has no master key yet, and the probe does not make one
        assert "none yet" in body["checks"]["tsm-master-key"]["detail"]
        assert not (home / "tsm" / "master.key").exists()
        assert "none yet" in body["checks"]["reader-session-key"]["detail"]
        assert not (home / "reader" / "session.key").exists()
        assert "/readyz" in c.get("/openapi.json").json()["paths"]
    app.state.jobs.shutdown()


def test_not_ready_when_the_schema_is_behind(home):
    ctx = Context.open(home)
    applied, newest = schema_status(ctx.engine)
    assert applied == newest
    assert "i0005idlist" in newest
    command.downgrade(_alembic_config(ctx.engine), "i0004dsrev")  # the issuer's branch, one back
    r = _probe_app(ctx).get("/readyz")
    assert r.status_code == 503 and r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["status"] == 503 and body["detail"] == "not ready: schema"
    assert "missing i0005idlist" in body["checks"]["schema"]["detail"]
    assert body["checks"]["database"]["ok"] and body["checks"]["keystore"]["ok"]


def test_not_ready_when_the_database_or_the_key_store_is_unreachable(home, monkeypatch):
    down = Context.open(home, database="postgresql+psycopg://postgres@127.0.0.1:1/test")
    r = _probe_app(down).get("/readyz")
    assert r.status_code == 503
    checks = r.json()["checks"]
    assert not checks["database"]["ok"] and "OperationalError" in checks["database"]["detail"]
    assert "Traceback" not in r.text and "postgres@" not in r.text
    monkeypatch.setenv("MCRED_KEYSTORE", "pkcs11")
    monkeypatch.delenv("MCRED_PKCS11_PIN", raising=False)
    monkeypatch.delenv("MCRED_PKCS11_PIN_FILE", raising=False)
    r = _probe_app(Context.open(home)).get("/readyz")
    assert r.status_code == 503 and r.json()["detail"] == "not ready: keystore"
    assert "needs the token's user PIN" in r.json()["checks"]["keystore"]["detail"]
    assert os.environ["MCRED_KEYSTORE"] == "pkcs11"
    monkeypatch.delenv("MCRED_KEYSTORE")
    monkeypatch.setenv("MCRED_TSM_MASTER_KEY", "pkcs11")
    r = _probe_app(Context.open(home)).get("/readyz")
    assert r.status_code == 503 and r.json()["detail"] == "not ready: tsm-master-key"
    detail = r.json()["checks"]["tsm-master-key"]["detail"]
    assert detail.startswith("MasterKeyError") and "MCRED_TSM_MASTER_KEY=pkcs11 needs the token's user PIN" in detail


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_probes_refuse_other_methods_as_problems(home, path):
    r = _probe_app(Context.open(home)).post(path)
    assert r.status_code == 405 and r.headers["content-type"] == "application/problem+json"


def test_a_broken_reader_session_key_is_not_ready_and_its_routes_answer_503(home):
    """The key file is the operator's to fix: readiness names it, and the reader's routes
    answer 503 problem+json (not a 500) while it is broken."""
    from issuer.api.auth import create_token

    ctx = Context.open(home)
    (home / "reader").mkdir(parents=True)
    (home / "reader" / "session.key").write_text("not a key\n")
    r = _probe_app(ctx).get("/readyz")
    assert r.status_code == 503 and r.json()["detail"] == "not ready: reader-session-key"
    assert "not hex" in r.json()["checks"]["reader-session-key"]["detail"]
    _, token = create_token(ctx.sessions, ["reader"], "t")
    app = create_app(ctx, job_workers=1)
    with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as c:
        r = c.post("/reader/sessions", content=b"mdoc:x")
        assert r.status_code == 503 and r.json()["type"] == "/problems/reader-unavailable"
    app.state.jobs.shutdown()
