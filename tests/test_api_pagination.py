"""Every list route of the issuer service pages the same way (specs/api.md, "Routes"):
``limit`` and ``offset`` taken and echoed beside the items (/phones, /credentials, /holders,
/tsm-jobs, /jobs, /audit, /tsm-audit), and a page of /jobs is full of the jobs the token may
see, so that the next ``offset`` neither skips nor repeats one."""

from __future__ import annotations

import datetime as dt

import pytest
from fastapi.testclient import TestClient

from issuer.api.auth import create_token
from issuer.api.jobs import Job
from issuer.db import AuditEvent
from mcred.context import Context
from mcred.service import create_app
from tsm.db import AuditRow

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@pytest.fixture
def world(home):
    ctx = Context.open(home)
    tokens = {s: {"Authorization": f"Bearer {create_token(ctx.sessions, [s])[1]}"} for s in ("issuer", "operator")}
    with TestClient(create_app(ctx, job_workers=1)) as client:
        yield ctx, client, tokens


def test_every_list_route_echoes_limit_and_offset(world):
    _ctx, client, tok = world
    for url, scope in (("/phones", "operator"), ("/credentials", "issuer"), ("/holders", "issuer"), ("/tsm-jobs", "issuer"),
                       ("/jobs", "issuer"), ("/audit", "operator"), ("/tsm-audit", "operator")):
        r = client.get(url, params={"limit": 3, "offset": 2}, headers=tok[scope])
        assert r.status_code == 200, (url, r.text)
        assert (r.json()["limit"], r.json()["offset"]) == (3, 2), url
        assert client.get(url, params={"offset": -1}, headers=tok[scope]).status_code == 422, url


def test_jobs_pages_are_full_of_the_tokens_jobs(world):
    """Newer operator jobs no longer eat an issuer token's page: the view is in the query."""
    ctx, client, tok = world
    with ctx.sessions.begin() as s:
        for i in range(3):
            s.add(Job(kind="provision", scope="issuer", state="succeeded", params={"n": i}, actor="t",
                      runner="gone", created_at=T0 + dt.timedelta(minutes=i), heartbeat_at=T0))
        for i in range(3):
            s.add(Job(kind="drill", scope="operator", state="succeeded", params={"n": i}, actor="t",
                      runner="gone", created_at=T0 + dt.timedelta(hours=1, minutes=i), heartbeat_at=T0))
    pages = [client.get("/jobs", params={"limit": 2, "offset": o}, headers=tok["issuer"]).json()["jobs"]
             for o in (0, 2)]
    assert [[j["params"]["n"] for j in p] for p in pages] == [[2, 1], [0]]
    every = client.get("/jobs", params={"limit": 4, "offset": 1}, headers=tok["operator"]).json()["jobs"]
    assert [(j["kind"], j["params"]["n"]) for j in every] == [("drill", 1), ("drill", 0), ("provision", 2),
                                                                ("provision", 1)]


def test_the_audit_trails_page_back_in_time(world):
    ctx, client, tok = world
    with ctx.sessions.begin() as s:
        for i in range(5):
            s.add(AuditEvent(actor="cli:test", action="credential.hold", subject=f"c{i}", detail={}))
            s.add(AuditRow(actor="cli:test", se_id="ph-page", event="job-done", what=f"r{i}", detail={}))
    subjects = [[e["subject"] for e in client.get("/audit", params={"action": "credential", "limit": 2,
                                                                    "offset": o}, headers=tok["operator"]).json()["events"]]
                for o in (0, 2, 4)]
    assert subjects == [["c4", "c3"], ["c2", "c1"], ["c0"]]
    records = [[r["what"] for r in client.get("/tsm-audit", params={"phone_id": "ph-page", "limit": 2, "offset": o},
                                              headers=tok["operator"]).json()["records"]]
               for o in (0, 2, 4)]
    assert records == [["r3", "r4"], ["r1", "r2"], ["r0"]]  # each page in the order written


def test_phones_page_by_id_and_the_default_page_is_the_whole_list(world):
    """GET /phones was the one list without limit / offset: it pages by id now, and without
    them answers the list it always did (the first 1000 phones: every one a lab makes)."""
    _ctx, client, tok = world
    made = sorted(client.post("/phones", json={}, headers=tok["operator"]).json()["id"] for _ in range(3))
    whole = client.get("/phones", headers=tok["operator"]).json()
    assert whole == {"phones": made, "limit": 1000, "offset": 0}
    pages = [client.get("/phones", params={"limit": 2, "offset": o}, headers=tok["operator"]).json()["phones"]
             for o in (0, 2, 4)]
    assert pages == [made[:2], made[2:], []]
    assert client.get("/phones", params={"limit": 1001}, headers=tok["operator"]).status_code == 422
