"""A relying party's page at ``--origin`` calls a reader hosted at another origin: the
page's routes (online sessions, the verdict it polls) answer CORS for that origin alone,
preflight of its JSON POST included; no other origin, and no other route, gets a CORS
header; never ``*``, never credentials (mcred.present.PageCors, specs/presentation.md
section 10)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

PAGE = "https://rp.example"
OTHER = "https://evil.example"


def _app(origin):
    from mcred.present import reader_app
    from reader.http import ReaderService
    from reader.pipeline import ReaderPipeline
    from reader.relying_party import RelyingPartyService
    from reader.session import DEFAULT_REQUEST
    from reader.trust import TrustStore

    service = ReaderService(ReaderPipeline(TrustStore()), [DEFAULT_REQUEST], origin=origin)
    return reader_app(service, RelyingPartyService([]))


@pytest.fixture
def client():
    with TestClient(_app(PAGE)) as c:
        yield c


def _preflight(client, url, origin=PAGE):
    return client.options(url, headers={"Origin": origin, "Access-Control-Request-Method": "POST",
                                        "Access-Control-Request-Headers": "content-type"})


def test_the_pages_routes_answer_its_origin(client):
    opened = client.post("/online/sessions", headers={"Origin": PAGE})
    assert opened.status_code == 201
    assert opened.headers["access-control-allow-origin"] == PAGE
    assert "access-control-allow-credentials" not in opened.headers
    assert "location" in opened.headers["access-control-expose-headers"].lower()
    sid = opened.json()["session"]
    pre = _preflight(client, f"/online/sessions/{sid}")
    assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == PAGE
    assert "POST" in pre.headers["access-control-allow-methods"]
    assert "content-type" in pre.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in pre.headers
    # the refusals the page reads carry it too: a body that is no credential, a verdict not yet there
    bad = client.post(f"/online/sessions/{sid}", json={"nothing": 1}, headers={"Origin": PAGE})
    assert bad.status_code == 400 and bad.headers["access-control-allow-origin"] == PAGE
    poll = client.get(f"/sessions/{sid}/result", headers={"Origin": PAGE})
    assert poll.status_code == 409 and poll.headers["access-control-allow-origin"] == PAGE
    assert "origin" in poll.headers["vary"].lower()


def test_another_origin_and_other_routes_get_no_cors(client):
    opened = client.post("/online/sessions", headers={"Origin": OTHER})
    assert "access-control-allow-origin" not in opened.headers
    pre = _preflight(client, "/online/sessions", origin=OTHER)
    assert pre.status_code == 400 and "access-control-allow-origin" not in pre.headers
    for url in ("/sessions", "/rp/jpki/verify", "/issuer-signed/verify"):
        r = client.post(url, content=b"x", headers={"Origin": PAGE})
        assert "access-control-allow-origin" not in r.headers, url
        pre = _preflight(client, url)
        assert pre.status_code != 200 and "access-control-allow-origin" not in pre.headers, url
    r = client.get("/metrics", headers={"Origin": PAGE})
    assert "access-control-allow-origin" not in r.headers


def test_a_reader_without_an_origin_answers_no_cors():
    with TestClient(_app(None)) as c:
        r = c.post("/online/sessions", headers={"Origin": PAGE})
        assert r.status_code == 409 and "access-control-allow-origin" not in r.headers
        assert _preflight(c, "/online/sessions").status_code != 200
