"""Request bodies are bounded as they are read (FastAPI's ``max_body_size``, set by
mcred.service.max_body_size): a Content-Length over the limit, or a chunked body that grows
past it, is HTTP 413 problem+json on the issuer service and on the reader service, for
routes that read raw bytes (OCSP, reader sessions) and JSON ones alike; the relying party's
route takes its larger documented size."""

from __future__ import annotations

import base64

import pytest
from fastapi.testclient import TestClient

from mcred.service import DEFAULT_MAX_BODY, max_body_size

#: every answer a TestClient gets held to its app's OpenAPI document, refusals too
pytestmark = pytest.mark.usefixtures("every_answer_checked")

MIB = 1024 * 1024


@pytest.fixture
def issuer_client(home):
    from mcred.context import Context
    from mcred.service import create_app

    with TestClient(create_app(Context.open(home), job_workers=1)) as client:
        yield client


@pytest.fixture
def reader_client():
    from mcred.present import reader_app
    from reader.http import ReaderService
    from reader.pipeline import ReaderPipeline
    from reader.relying_party import RelyingPartyService
    from reader.session import DEFAULT_REQUEST
    from reader.trust import TrustStore

    app = reader_app(ReaderService(ReaderPipeline(TrustStore()), [DEFAULT_REQUEST]), RelyingPartyService([]))
    with TestClient(app) as client:
        yield client


def _chunks(total: int, size: int = 64 * 1024):
    sent = 0
    while sent < total:
        yield b"\0" * min(size, total - sent)
        sent += size


def _is_413(r) -> None:
    """413 problem+json, whether the body was refused while being read (chunked) or its
    Content-Length alone was over the limit (Starlette's plain answer, made a problem)."""
    assert r.status_code == 413, (r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    assert r.json()["status"] == 413 and r.json()["type"] == "/problems/too-large"


def test_ocsp_post_refuses_a_large_body_declared_or_chunked(issuer_client):
    headers = {"Content-Type": "application/ocsp-request"}
    _is_413(issuer_client.post("/ocsp", content=b"\0" * (DEFAULT_MAX_BODY + 1), headers=headers))
    _is_413(issuer_client.post("/ocsp", content=_chunks(3 * MIB), headers=headers))
    small = issuer_client.post("/ocsp", content=b"\0" * 100, headers=headers)
    assert small.status_code == 200  # malformedRequest in-band, as before


def test_json_routes_of_the_issuer_refuse_a_large_body_before_parsing(issuer_client):
    _is_413(issuer_client.post("/provisioning", content=_chunks(2 * MIB),
                               headers={"Content-Type": "application/json"}))


def test_reader_sessions_and_the_relying_party(reader_client):
    _is_413(reader_client.post("/sessions", content=_chunks(2 * MIB), headers={"Content-Type": "text/plain"}))
    # the relying party takes content up to 4 MiB (base64 in JSON): not refused for size ...
    content = base64.b64encode(b"x" * (3 * MIB)).decode()
    r = reader_client.post("/rp/jpki/verify", json={"content": content, "signature": "AAAA", "slot": "sign"})
    assert r.status_code != 413, r.text[:200]
    # ... but beyond its own larger limit it is
    _is_413(reader_client.post("/rp/jpki/verify", content=_chunks(9 * MIB),
                               headers={"Content-Type": "application/json"}))


def test_the_limit_setting(monkeypatch):
    from reader.http import RP_MAX_BODY

    assert max_body_size() == DEFAULT_MAX_BODY and RP_MAX_BODY > 5 * MIB
    monkeypatch.setenv("MCRED_MAX_BODY", "2048")
    assert max_body_size() == 2048
    monkeypatch.setenv("MCRED_MAX_BODY", "lots")
    assert max_body_size() == DEFAULT_MAX_BODY
