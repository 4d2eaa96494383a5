"""Deny by default: tokens, scopes, the startup check, and a walk over every route of the
OpenAPI document showing that without a token or with the wrong scope nothing answers but
401/403 problem+json, and nothing changes (issue 8, "Done when" 1)."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from fastapi import APIRouter
from fastapi.testclient import TestClient

import wallet_sim
from issuer.api.auth import (
    SCOPES,
    TokenError,
    create_token,
    list_tokens,
    revoke_token,
    verify_token,
)
from mcred.context import Context
from mcred.service import Mount, UndeclaredRouteError, check_scopes, create_app

#: every answer a TestClient gets held to its app's OpenAPI document, refusals too
pytestmark = pytest.mark.usefixtures("every_answer_checked")

PROBLEM = "application/problem+json"


@pytest.fixture
def ctx(home: Path) -> Context:
    return Context.open(home)


@pytest.fixture
def app(ctx: Context):
    return create_app(ctx, job_workers=2)


def test_token_format_and_only_a_hash_is_stored(ctx: Context, home: Path):
    token_id, token = create_token(ctx.sessions, ["issuer", "tsm"], "ci")
    m = re.fullmatch(r"mcred_([0-9a-f]{32})_([A-Za-z0-9_-]{43})", token)
    assert m and m.group(1) == token_id
    secret = m.group(2)
    p = verify_token(ctx.sessions, token)
    assert p is not None and p.scopes == {"issuer", "tsm"} and p.allows("tsm")
    assert not p.allows("operator") and not p.allows("reader")
    # Grep the database: neither the token nor its secret is anywhere in it.
    ctx.engine.dispose()
    raw = b"".join(f.read_bytes() for f in home.glob("mcred.sqlite3*"))
    assert secret.encode() not in raw and token.encode() not in raw
    with sqlite3.connect(home / "mcred.sqlite3") as db:
        (stored,) = db.execute("select secret_hash from api_tokens where id=?",
                               (token_id,)).fetchone()
    assert stored.startswith("sha256$") and secret not in stored
    assert all(secret not in repr(t) for t in list_tokens(ctx.sessions))


def test_wrong_secret_unknown_id_malformed_and_revoked_tokens_are_refused(ctx: Context):
    token_id, token = create_token(ctx.sessions, ["operator"])
    assert verify_token(ctx.sessions, token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert verify_token(ctx.sessions, "mcred_" + "0" * 32 + token[-44:]) is None
    for bad in ("", "Bearer", token + "x", token.upper(), "mcred__", token.replace("_", "-")):
        assert verify_token(ctx.sessions, bad) is None
    assert revoke_token(ctx.sessions, token_id) is True
    assert revoke_token(ctx.sessions, token_id) is False
    assert verify_token(ctx.sessions, token) is None
    with pytest.raises(TokenError):
        revoke_token(ctx.sessions, "f" * 32)


def test_scopes_are_checked_at_creation(ctx: Context):
    with pytest.raises(TokenError, match="'admin'"):
        create_token(ctx.sessions, ["admin"])
    with pytest.raises(TokenError):
        create_token(ctx.sessions, [])


def test_operator_implies_every_scope(ctx: Context):
    _, token = create_token(ctx.sessions, ["operator"])
    p = verify_token(ctx.sessions, token)
    assert p is not None and all(p.allows(s) for s in SCOPES)


# --- the startup check -------------------------------------------------------------------


def test_a_route_added_without_a_declared_scope_fails_the_startup_check(app):
    check_scopes(app)  # the assembled service passes

    @app.get("/sneaky")
    def sneaky() -> dict:
        return {"secret": True}

    with pytest.raises(UndeclaredRouteError, match="/sneaky"):
        check_scopes(app)
    with pytest.raises(UndeclaredRouteError), TestClient(app):
        pass  # startup (lifespan) refuses to serve


def test_a_router_included_behind_the_mounts_back_fails_too(app):
    extra = APIRouter()

    @extra.get("/backdoor")
    def backdoor() -> dict:
        return {}

    app.include_router(extra)
    with pytest.raises(UndeclaredRouteError, match="/backdoor"):
        check_scopes(app)


def test_a_mount_with_an_unknown_scope_is_refused(ctx: Context):
    r = APIRouter()

    @r.get("/x")
    def x() -> dict:
        return {}

    with pytest.raises(UndeclaredRouteError, match="admin"):
        create_app(ctx, extra_mounts=[Mount(r, scope="admin")])


def test_a_route_added_later_to_a_mounted_router_inherits_its_scope(ctx: Context):
    r = APIRouter()
    app = create_app(ctx, extra_mounts=[Mount(r, scope="operator")])

    @r.get("/later")
    def later() -> dict:
        return {"ok": True}

    check_scopes(app)
    assert app.openapi()["paths"]["/later"]["get"]["x-mcred-scope"] == "operator"
    c = TestClient(app)
    assert c.get("/later").status_code == 401
    _, tok = create_token(ctx.sessions, ["operator"])
    assert c.get("/later", headers={"Authorization": f"Bearer {tok}"}).json() == {"ok": True}


# --- the walk over every route -----------------------------------------------------------

HOLDER = {"family_name": "山田", "given_name": "太郎", "family_name_kana": "ヤマダ",
          "given_name_kana": "タロウ", "birth_date": "1990-01-02", "sex": 1,
          "address": "東京都千代田区1-1", "prefecture": "東京都", "municipality": "千代田区"}


def _plausible(path: str, method: str, op: dict, phone_id: str, ids: dict[str, str]):
    """A request that only the missing authorisation should stop."""
    def value(name: str) -> str:
        if name == "phone_id":
            return phone_id
        return ids.get(name, "0" * 32)

    url = re.sub(r"\{([^}:]+)(:[^}]*)?\}", lambda m: value(m.group(1)), path)
    body = None
    if "requestBody" in op:
        body = {
            "/phones": {"model": "walk"},
            "/provisioning": {"phone_id": phone_id, "holder": HOLDER, "key_type": "p384",
                              "mdoc_batch": 1, "pin": "1234", "password": "ABC123",
                              "puk": "12345678"},
            "/revocations": {"phone_id": phone_id, "reason": "keyCompromise"},
            "/holds": {"phone_id": phone_id},
            "/holds/release": {"phone_id": phone_id},
            "/handovers": {"kind": "death", "holder_id": ids["holder_id"],
                           "old_phone_id": phone_id},
            "/drills": {"scenario": "death", "phones": 1},
        }.get(path, {})
    return method.upper(), url, body


def _snapshot(ctx: Context, home: Path) -> dict:
    with ctx.engine.connect() as conn:
        counts = {t: conn.execute(sa.text(f'select count(*) from "{t}"')).scalar()
                  for t in sa.inspect(conn).get_table_names()}
        statuses = conn.execute(sa.text("select id, status from credentials")).fetchall()
    phones = {p: sorted((f.name, f.stat().st_mtime_ns) for f in (home / "phones" / p).rglob("*"))
              for p in wallet_sim.list_phones(home)}
    return {"counts": counts, "statuses": sorted(statuses), "phones": phones}


def test_every_protected_route_refuses_strangers_and_wrong_scopes(ctx: Context, home: Path):
    app = create_app(ctx, job_workers=2)
    client = TestClient(app)
    phone_id = wallet_sim.create_phone(home)
    from issuer.holders import attach_phone, register

    holder_id = register(ctx.sessions, HOLDER)
    attach_phone(ctx.sessions, holder_id, phone_id)
    ids = {"holder_id": holder_id, "job_id": "1" * 32, "credential_id": "2" * 32,
           "handover_id": "3" * 32}
    tokens = {s: create_token(ctx.sessions, [s], f"walk-{s}")[1] for s in SCOPES}
    revoked_id, revoked = create_token(ctx.sessions, ["operator"], "revoked")
    revoke_token(ctx.sessions, revoked_id)
    before = _snapshot(ctx, home)

    doc = app.openapi()
    protected = public = 0
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            scope = op.get("x-mcred-scope")
            verb, url, body = _plausible(path, method, op, phone_id, ids)
            if scope is None:
                assert "security" not in op, f"{verb} {path} is public but asks for a token"
                public += 1
                continue
            protected += 1
            assert op.get("security") == [{"HTTPBearer": []}], f"{verb} {path}"
            strangers = [{}, {"Authorization": "Bearer nonsense"},
                         {"Authorization": f"Bearer {revoked}"},
                         {"Authorization": f"Basic {tokens['operator']}"},
                         {"Authorization": tokens["operator"]}]
            for headers in strangers:
                r = client.request(verb, url, json=body, headers=headers)
                assert r.status_code == 401, (verb, path, headers, r.status_code, r.text)
                assert r.headers["content-type"] == PROBLEM
                assert r.json()["type"] == "/problems/unauthenticated"
                assert r.headers["www-authenticate"].startswith("Bearer")
            for s in SCOPES:
                if s in (scope, "operator"):
                    continue
                r = client.request(verb, url, json=body,
                                   headers={"Authorization": f"Bearer {tokens[s]}"})
                assert r.status_code == 403, (verb, path, s, r.status_code, r.text)
                assert r.headers["content-type"] == PROBLEM
                assert r.json()["type"] == "/problems/forbidden"
    # Every route is in the document and none of them is public by accident.
    assert protected >= 15 and public >= 4
    assert _snapshot(ctx, home) == before


def test_public_material_needs_no_token(app):
    c = TestClient(app)
    assert c.get("/trust/iaca.pem").status_code == 200
    assert c.get("/trust/jpki-sign-root.der").status_code == 200
    r = c.post("/ocsp", content=b"\x30\x00", headers={"Content-Type": "application/ocsp-request"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/ocsp-response"


def test_a_job_is_visible_only_to_tokens_allowed_its_scope(ctx: Context, home: Path):
    app = create_app(ctx, job_workers=1)
    jobs = app.state.jobs
    # a kind the document knows (every answer here is held to it), doing nothing: only who
    # may see the job matters
    done = {"phone": "p", "job": "j", "kloc": "current", "old_ca_ski": None, "ca_ski": None}
    jobs.register("kloc-move", lambda params, progress: done)
    issuer_job = jobs.submit("kloc-move", {"phone_id": "p"}, scope="issuer", actor="t")
    operator_job = jobs.submit("kloc-move", {"phone_id": "p"}, scope="operator", actor="t")
    jobs.wait(issuer_job.id)
    jobs.wait(operator_job.id)
    _, issuer_tok = create_token(ctx.sessions, ["issuer"])
    c = TestClient(app)
    h = {"Authorization": f"Bearer {issuer_tok}"}
    assert c.get(f"/jobs/{issuer_job.id}", headers=h).json()["state"] == "succeeded"
    r = c.get(f"/jobs/{operator_job.id}", headers=h)
    assert r.status_code == 404 and r.headers["content-type"] == PROBLEM
    listed = {j["id"] for j in c.get("/jobs", headers=h).json()["jobs"]}
    assert issuer_job.id in listed and operator_job.id not in listed
    jobs.shutdown()


def test_token_cli_prints_once_lists_without_secrets_and_revokes(home: Path):
    from typer.testing import CliRunner

    from mcred.cli.main import app as cli

    runner = CliRunner()
    r = runner.invoke(cli, ["token", "create", "--scope", "issuer", "--scope", "tsm",
                            "--name", "ci"])
    assert r.exit_code == 0, r.output
    token = next(w for w in r.output.split() if w.startswith("mcred_"))
    ctx = Context.open(home)
    p = verify_token(ctx.sessions, token)
    assert p is not None and p.scopes == {"issuer", "tsm"} and p.name == "ci"
    r = runner.invoke(cli, ["token", "list"])
    assert r.exit_code == 0 and p.token_id in r.output and token[39:] not in r.output
    r = runner.invoke(cli, ["token", "create", "--scope", "root"])
    assert r.exit_code != 0 and "root" in r.output
    r = runner.invoke(cli, ["token", "revoke", p.token_id])
    assert r.exit_code == 0 and verify_token(ctx.sessions, token) is None
    assert "revoked" in runner.invoke(cli, ["token", "list"]).output


def test_a_token_created_without_a_name_is_said_by_the_name_it_is_kept_under(home: Path):
    """``token create --json`` without --name printed ``"name": ""`` and audited that, while
    the token is kept, listed and records its calls under ``token-<first 8 digits of its
    id>``: a script matching the two found no token. Both say the stored name now."""
    import json

    from typer.testing import CliRunner

    from issuer.db import AuditEvent
    from mcred.cli.main import app as cli

    r = CliRunner().invoke(cli, ["token", "create", "--scope", "reader", "--json"])
    assert r.exit_code == 0, r.output
    created = json.loads(r.output)
    listed = {t["id"]: t for t in json.loads(CliRunner().invoke(cli, ["token", "list", "--json"]).output)}
    assert created["name"] == listed[created["id"]]["name"] == f"token-{created['id'][:8]}"
    ctx = Context.open(home)
    assert verify_token(ctx.sessions, created["token"]).name == created["name"]
    with ctx.sessions() as s:
        (event,) = s.query(AuditEvent).filter_by(action="token.create", subject=created["id"]).all()
    assert event.detail["name"] == created["name"]


def test_a_token_given_for_a_term_is_refused_once_it_expires(db_url, home: Path):
    """A relying party's service account for a term: `mcred token create --expires 90d`
    (or an instant with its offset). Once past, the token is refused as a revoked one is (a
    401 over HTTP), `mcred token list` says expired, and the creation's audit names the
    expiry. An expiry in the past, or an instant without its offset, is refused at creation."""
    import datetime as dt

    from typer.testing import CliRunner

    from issuer.db import ApiToken, utcnow
    from mcred.cli.main import app as cli

    ctx = Context.open(home, db_url)
    runner = CliRunner()
    env = {"MCRED_DATABASE_URL": db_url}
    r = runner.invoke(cli, ["token", "create", "--scope", "reader", "--name", "rp", "--expires", "90d"], env=env)
    assert r.exit_code == 0, r.output
    token = next(w for w in r.output.split() if w.startswith("mcred_"))
    p = verify_token(ctx.sessions, token)
    assert p is not None
    (info,) = [t for t in list_tokens(ctx.sessions) if t.id == p.token_id]
    left = dt.datetime.fromisoformat(info.expires_at) - utcnow()
    assert dt.timedelta(days=89, hours=23) < left <= dt.timedelta(days=90) and info.state == "active"
    client = TestClient(create_app(ctx, job_workers=1))
    auth = {"Authorization": f"Bearer {token}"}
    operator = create_token(ctx.sessions, ["operator"])[1]
    assert client.get("/reader/sessions/" + "0" * 32 + "/result", headers=auth).status_code == 404  # let in
    with ctx.sessions.begin() as s:  # the term runs out
        s.get(ApiToken, p.token_id).expires_at = utcnow() - dt.timedelta(seconds=1)
    assert verify_token(ctx.sessions, token) is None
    refused = client.get("/reader/sessions/" + "0" * 32 + "/result", headers=auth)
    assert refused.status_code == 401 and "expired" in refused.json()["detail"]
    listed = runner.invoke(cli, ["token", "list"], env=env).output
    assert f"{p.token_id}  expired" in listed and "expires 20" in listed
    created = [e for e in client.get("/audit", params={"action": "token.create"},
                                     headers={"Authorization": f"Bearer {operator}"}).json()["events"]
               if e["subject"] == p.token_id]
    assert created[0]["detail"]["expires_at"].startswith(info.expires_at[:16])
    with pytest.raises(TokenError, match="not in the future"):
        create_token(ctx.sessions, ["reader"], expires_at=utcnow() - dt.timedelta(days=1))
    with pytest.raises(TokenError, match="time zone"):
        create_token(ctx.sessions, ["reader"], expires_at=dt.datetime(2099, 1, 1))
    for bad in ("2099-01-01", "0d", "90 days", "soon"):
        r = runner.invoke(cli, ["token", "create", "--scope", "reader", "--expires", bad], env=env)
        assert r.exit_code == 2 and "--expires" in r.output, (bad, r.output)
    r = runner.invoke(cli, ["token", "create", "--scope", "reader", "--expires", "2099-01-01T00:00:00+09:00"],
                      env=env)
    assert r.exit_code == 0 and "valid until 2098-12-31T15:00:00+00:00" in r.output, r.output
    ctx.engine.dispose()


def test_a_token_name_longer_than_its_column_is_refused_on_every_backend(db_url):
    """SQLite keeps a VARCHAR longer than declared; PostgreSQL refuses it with a DataError.
    The name is checked first, so both backends give the same TokenError."""
    from sqlalchemy.orm import sessionmaker

    from issuer.api.auth import NAME_MAX, TokenError
    from mcred.db import make_engine, migrate

    engine = make_engine(db_url)
    migrate(engine)
    sessions = sessionmaker(engine)
    create_token(sessions, ["operator"], "n" * NAME_MAX)
    with pytest.raises(TokenError, match=f"at most {NAME_MAX}"):
        create_token(sessions, ["operator"], "n" * (NAME_MAX + 1))
    engine.dispose()


@pytest.mark.parametrize("bad", ["ci\x00bot", "\x1b]0;owned\x07", "a\nb", "x\ud800"])
def test_a_token_name_with_a_control_character_is_refused_on_every_backend(db_url, bad):
    """A NUL was a DataError on PostgreSQL (SQLite kept it); an escape sequence or a line
    break in a name reached every audit line and terminal that shows the token's actor."""
    from sqlalchemy import func, select
    from sqlalchemy.orm import sessionmaker

    from issuer.api.auth import TokenError
    from issuer.db import ApiToken
    from mcred.db import make_engine, migrate

    engine = make_engine(db_url)
    migrate(engine)
    sessions = sessionmaker(engine)
    with sessions() as s:
        before = s.scalar(select(func.count()).select_from(ApiToken))
    with pytest.raises(TokenError, match="U\\+"):
        create_token(sessions, ["operator"], bad)
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(ApiToken)) == before
    create_token(sessions, ["operator"], "山田 ci-bot (テスト)")  # any other text is a name
    engine.dispose()


def _declared(doc: dict, path: str, method: str, status: int) -> dict:
    responses = doc["paths"][path][method]["responses"]
    assert str(status) in responses, f"{method.upper()} {path} answers {status}, not in {sorted(responses)}"
    return responses[str(status)]


@pytest.mark.parametrize("reader_alone", [False, True])
def test_the_openapi_document_describes_the_errors_as_answered(ctx: Context, reader_alone: bool):
    """Every error response of the OpenAPI document is application/problem+json of the
    ``Problem`` schema (FastAPI documented 422 as a JSON ``HTTPValidationError``, a shape
    never sent, and no 401/403 at all); and what a stranger, a wrong scope and a body that
    fails validation get is each declared for the operation, with the media type answered."""
    if reader_alone:
        from mcred.present import reader_app, reader_pipeline
        from reader.http import ReaderService
        from reader.session import DEFAULT_REQUEST
        from reader.trust import TrustStore

        app = reader_app(ReaderService(reader_pipeline(trust=TrustStore()), [DEFAULT_REQUEST]))
    else:
        app = create_app(ctx, job_workers=1)
    doc = TestClient(app).get("/openapi.json").json()
    schemas = doc["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    assert {"type", "title", "status", "detail"} <= set(schemas["Problem"]["required"])
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            for status, response in op["responses"].items():
                if "$ref" in response:  # the one generic 500 (components/responses/InternalError)
                    response = doc["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
                if status[0] in "45":
                    assert list(response.get("content", {})) == [PROBLEM], (method, path, status)
                    assert response["content"][PROBLEM]["schema"] == {"$ref": "#/components/schemas/Problem"}
            # each refusal declared as such: no "default" that would let any status pass
            assert "500" in op["responses"] and "default" not in op["responses"], (method, path)
            if op.get("security"):
                assert {"401", "403"} <= set(op["responses"]), (method, path)
    if reader_alone:
        return
    tokens = {s: create_token(ctx.sessions, [s], f"doc-{s}")[1] for s in SCOPES}
    client = TestClient(app)
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            scope = op.get("x-mcred-scope")
            url = re.sub(r"\{([^}:]+)(:[^}]*)?\}", "0" * 32, path)
            if scope is not None:
                r = client.request(method.upper(), url)
                assert _declared(doc, path, method, r.status_code) and r.status_code == 401
                wrong = next(s for s in SCOPES if s not in (scope, "operator"))
                r = client.request(method.upper(), url, headers={"Authorization": f"Bearer {tokens[wrong]}"})
                assert _declared(doc, path, method, r.status_code) and r.status_code == 403
            body = op.get("requestBody", {}).get("content", {})
            if list(body) == ["application/json"]:
                r = client.request(method.upper(), url, content=b"[1]", headers={
                    "Content-Type": "application/json", "Authorization": f"Bearer {tokens['operator']}"})
                if r.status_code == 422:
                    assert r.headers["content-type"] == PROBLEM and r.json()["errors"], (method, path)
                    _declared(doc, path, method, 422)
    app.state.jobs.shutdown()


def test_public_material_is_answered_with_a_media_type_its_operation_declares(app):
    """An integrator's client generated from /openapi.json knows the OCSP, CRL, certificate
    and time-stamp media types (RFC 6960, 2585, 3161) only if the document names them: the
    OCSP and TSA operations and the JPKI and TSA roots documented none."""
    c = TestClient(app)
    doc = c.get("/openapi.json").json()
    assert list(doc["paths"]["/ocsp"]["post"]["requestBody"]["content"]) == ["application/ocsp-request"]
    for verb, url, path, body, media in [
            ("POST", "/ocsp", "/ocsp", b"\x30\x00", "application/ocsp-request"),
            ("GET", "/ocsp/MAA%3D", "/ocsp/{encoded}", None, None),
            ("GET", "/trust/jpki-sign-root.der", "/trust/{filename}", None, None),
            ("GET", "/trust/jpki-auth-root.pem", "/trust/{filename}", None, None),
            ("GET", "/trust/iaca.crl", "/trust/iaca.crl", None, None),
            ("GET", "/trust/iaca-1.crl", "/trust/iaca-{generation}.crl", None, None),
            ("GET", "/trust/iaca-1.pem", "/trust/iaca-{generation}.pem", None, None),
            ("GET", "/trust/iaca-1.der", "/trust/iaca-{generation}.der", None, None),
            ("GET", "/trust/vical-ca.crl", "/trust/vical-ca.crl", None, None),
            ("GET", "/trust/vical-ca-1.crl", "/trust/vical-ca-{generation}.crl", None, None),
            ("POST", "/tsa", "/tsa", b"\x30\x00", "application/timestamp-query"),
            ("GET", "/tsa/root.der", "/tsa/{filename}", None, None),
            ("GET", "/tsa/root.crl", "/tsa/{filename}", None, None)]:
        r = c.request(verb, url, content=body, headers={"Content-Type": media} if media else {})
        assert r.status_code == 200, (url, r.text)
        declared = doc["paths"][path][verb.lower()]["responses"]["200"].get("content", {})
        assert r.headers["content-type"] in declared, (url, r.headers["content-type"], list(declared))


#: Answers made afresh for each request, whose length may differ between any two of them: a
#: readiness check (its timings), an OCSP answer (signed when asked).
FRESH = ("/readyz", "/ocsp/")


def _head_as_get(c: TestClient, url: str, headers: dict | None = None) -> httpx.Response:
    """GET and HEAD ``url``: the GET's status, no content, the GET's headers (but for the
    length of an answer made afresh, :data:`FRESH`, which must be there all the same)."""
    got, head = c.get(url, headers=headers), c.head(url, headers=headers)
    assert head.status_code == got.status_code, (url, head.status_code, got.status_code)
    assert head.content == b"", url
    assert set(head.headers) == set(got.headers), (url, head.headers, got.headers)
    fresh = {"content-length"} if url.startswith(FRESH) else set()
    assert {k: v for k, v in head.headers.items() if k not in fresh} == {
        k: v for k, v in got.headers.items() if k not in fresh}, url
    return got


def _walk_head(c: TestClient, doc: dict, headers: dict, concrete: dict[str, list[str]]) -> set[str]:
    """Every path of ``doc``: HEAD declared (its operation the GET's, answered as the GET at
    each URL of ``concrete[path]`` and at one that names nothing) or a 405; the paths that
    declare it."""
    def pattern(template: str) -> str:
        return re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))

    declared = [pattern(p) for p, ops in doc["paths"].items() if "head" in ops]
    heads = set()
    for path, ops in doc["paths"].items():
        url = re.sub(r"\{([^}:]+)(:[^}]*)?\}", "0" * 32, path)
        if "head" not in ops:
            if any(re.fullmatch(p, url) for p in declared):  # /trust/ds-rollover: a /trust/{filename}
                _head_as_get(c, url, headers)
                continue
            r = c.head(url, headers=headers)
            assert r.status_code == 405 and "HEAD" not in r.headers.get("allow", ""), (path, r.status_code)
            continue
        heads.add(path)
        head, get = ops["head"], ops["get"]
        assert head["operationId"] != get["operationId"], path
        # the same operation but for its id and the titles FastAPI derives from it
        same = [re.sub(r'"(operationId|title)": "[^"]*"', "", json.dumps(op, sort_keys=True)) for op in (head, get)]
        assert same[0] == same[1], path
        for each in [*concrete[path], url]:
            _head_as_get(c, each, headers)
    return heads


def test_every_route_that_answers_head_declares_it_and_answers_as_its_get(home: Path):
    """A cache, a CDN or ``curl -I`` asks HEAD of a CRL, an OCSP answer, a status list or a
    certificate. It was answered on every GET route (a middleware ran the GET) but the
    document declared none, so a client generated from it had no HEAD, and a HEAD ran a
    protected or one-time GET too (a session's result, a request object). Now the public
    material and the health probes declare HEAD, answered as their GET (status, headers
    with ETag, Cache-Control and Content-Length, a 304 on If-None-Match, a 404) without
    content; every other route answers HEAD 405, on both services."""
    import base64
    import urllib.parse

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509 import ocsp
    from test_present_http import free_port, installation_env

    from issuer.db import StatusList
    from issuer.jpki.partitions import municipality_of
    from mcred.present import reader_app, reader_pipeline
    from mcred.provision import parse_holder, provision
    from reader.http import ReaderService
    from reader.session import DEFAULT_REQUEST
    from reader.trust import TrustStore

    with installation_env(home, free_port()):
        ctx = Context.open(home)
        provision(ctx, wallet_sim.create_phone(home), parse_holder(HOLDER), key_type="p384", mdoc_batch=1,
                  pin="1234", password="ABCD1234")
        with ctx.sessions() as s:
            list_id = s.scalars(sa.select(StatusList.id)).first()
        c = TestClient(create_app(ctx, job_workers=1))
        operator = {"Authorization": f"Bearer {create_token(ctx.sessions, ['operator'])[1]}"}
        root = x509.load_der_x509_certificate(c.get("/trust/jpki-sign-root.der").content)
        request = ocsp.OCSPRequestBuilder().add_certificate(root, root, hashes.SHA256()).build()
        encoded = urllib.parse.quote(base64.b64encode(request.public_bytes(serialization.Encoding.DER)), safe="")
        concrete = {"/healthz": ["/healthz"], "/readyz": ["/readyz"],
                    "/status/{list_id}": [f"/status/{list_id}"], "/identifiers/{list_id}": [f"/identifiers/{list_id}"],
                    "/trust/iaca.pem": ["/trust/iaca.pem"], "/trust/iaca.der": ["/trust/iaca.der"],
                    "/trust/vical": ["/trust/vical"], "/trust/vical-ca.pem": ["/trust/vical-ca.pem"],
                    "/trust/iaca.crl": ["/trust/iaca.crl"], "/ocsp/{encoded}": [f"/ocsp/{encoded}"],
                    "/trust/iaca-{generation}.pem": ["/trust/iaca-1.pem"],
                    "/trust/iaca-{generation}.der": ["/trust/iaca-1.der"],
                    "/trust/iaca-{generation}.crl": ["/trust/iaca-1.crl"],
                    "/trust/vical-ca.crl": ["/trust/vical-ca.crl"],
                    "/trust/vical-ca-{generation}.crl": ["/trust/vical-ca-1.crl"],
                    "/crl/{slot}/{filename}": [f"/crl/sign/{municipality_of(HOLDER).code}.crl"],
                    "/trust/{filename}": ["/trust/jpki-sign-root.pem", "/trust/jpki-auth-root.der"],
                    "/tsa/{filename}": ["/tsa/root.pem", "/tsa/root.der", "/tsa/root.crl"]}
        doc = c.get("/openapi.json").json()
        assert _walk_head(c, doc, operator, concrete) == set(concrete)
        assert not any(doc["paths"][p]["head"].get("x-mcred-scope") or "security" in doc["paths"][p]["head"]
                       for p in concrete)  # public, as their GETs
        for url in [u for urls in concrete.values() for u in urls]:  # real material: 200
            assert c.head(url).status_code == 200, url
        # a cache revalidates with HEAD as with GET: the same ETag, a 304 on it
        etag = _head_as_get(c, f"/status/{list_id}").headers["etag"]
        assert _head_as_get(c, f"/status/{list_id}", {"If-None-Match": etag}).status_code == 304
        # protected routes: 405 before any token is asked for (nothing runs), with or without one
        assert c.head("/phones").status_code == c.head("/jobs", headers=operator).status_code == 405
    reader = TestClient(reader_app(ReaderService(reader_pipeline(trust=TrustStore()), [DEFAULT_REQUEST])))
    assert _walk_head(reader, reader.get("/openapi.json").json(), {},
                      {"/healthz": ["/healthz"], "/readyz": ["/readyz"]}) == {"/healthz", "/readyz"}


def test_head_on_the_stand_alone_reader():
    from mcred.present import reader_app, reader_pipeline
    from reader.http import ReaderService
    from reader.session import DEFAULT_REQUEST
    from reader.trust import TrustStore

    c = TestClient(reader_app(ReaderService(reader_pipeline(trust=TrustStore()), [DEFAULT_REQUEST])))
    r = c.head("/healthz")
    assert r.status_code == 200 and r.content == b"" and r.headers["content-type"] == "application/json"


def _walk_405(c: TestClient, doc: dict, headers: dict) -> int:
    """Every path of ``doc`` and every method it does not declare (nor another path the same
    URL matches, as /trust/ds-rollover a /trust/{filename}): a 405 problem whose ``Allow``
    is the set of methods the document declares for the URL. The number of 405s seen."""
    def pattern(template: str) -> str:
        return re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))

    seen = 0
    for path in doc["paths"]:
        url = re.sub(r"\{([^}:]+)(:[^}]*)?\}", "0" * 32, path)
        declared = {m.upper() for p, ops in doc["paths"].items() if re.fullmatch(pattern(p), url) for m in ops}
        for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
            if method in declared:
                continue
            r = c.request(method, url, headers=headers)
            assert r.status_code == 405, (method, path, r.status_code)
            allow = {m.strip() for m in r.headers.get("allow", "").split(",") if m.strip()}
            assert allow == declared, (method, path, sorted(allow), sorted(declared))
            if method != "HEAD":  # a HEAD's problem is its headers alone
                assert r.headers["content-type"] == PROBLEM, (method, path)
                assert r.json()["type"] == "/problems/method-not-allowed" and r.json()["status"] == 405
            seen += 1
    return seen


def test_a_405_allows_every_method_its_path_takes(home: Path):
    """RFC 9110 15.5.6: a 405's ``Allow`` lists the target resource's supported methods.
    Starlette took them from the first route whose path matched: ``HEAD /phones`` answered
    ``Allow: POST`` though ``GET /phones`` is served too, and ``POST /healthz`` of the reader
    ``Allow: GET`` without its declared HEAD. Now every 405 of both services names every
    method the document declares for that URL, still as a problem."""
    from mcred.present import reader_app, reader_pipeline
    from reader.http import ReaderService
    from reader.session import DEFAULT_REQUEST
    from reader.trust import TrustStore

    ctx = Context.open(home)
    app = create_app(ctx, job_workers=1)
    c = TestClient(app)
    operator = {"Authorization": f"Bearer {create_token(ctx.sessions, ['operator'])[1]}"}
    r = c.head("/phones")
    assert r.status_code == 405 and {m.strip() for m in r.headers["allow"].split(",")} == {"GET", "POST"}
    assert _walk_405(c, c.get("/openapi.json").json(), operator) > 100
    assert _walk_405(c, c.get("/openapi.json").json(), {}) > 100  # without a token: the same 405s
    app.state.jobs.shutdown()
    reader = TestClient(reader_app(ReaderService(reader_pipeline(trust=TrustStore()), [DEFAULT_REQUEST])))
    assert _walk_405(reader, reader.get("/openapi.json").json(), {}) > 10


def test_a_misspelt_query_parameter_is_refused_not_ignored(app, ctx: Context):
    """GET /credentials?phone=X listed every holder's credentials: the filter is phone_id, and
    an unknown parameter was ignored, widening the answer silently. A route that takes query
    parameters now refuses one it does not know (422, naming it and the ones it takes); one
    that takes none ignores them (a cache-busting parameter on public material)."""
    c = TestClient(app)
    auth = {"Authorization": f"Bearer {create_token(ctx.sessions, ['operator'])[1]}"}
    r = c.get("/credentials", params={"phone": "p1"}, headers=auth)
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json", r.text
    assert "query.phone: unknown query parameter (this route takes " in r.json()["detail"]
    assert "phone_id" in r.json()["detail"]
    assert c.get("/credentials", params={"phone_id": "p1"}, headers=auth).status_code == 200
    assert c.get("/audit", params={"actr": "cli"}, headers=auth).status_code == 422
    assert c.get("/trust/iaca.pem", params={"v": "2"}).status_code == 200  # takes none: ignored
    assert c.get("/healthz", params={"x": "1"}).status_code == 200
    app.state.jobs.shutdown()
