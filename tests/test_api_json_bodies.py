"""JSON request bodies are read strictly by both services (issuer.api.problems.
StrictJsonMiddleware over protocols.json_strict): a member name given twice, at any depth,
is a 422 naming it, never "the last one wins"; a body that is not UTF-8 (UTF-16, a byte
order mark, invalid bytes), nests too deep, holds a 5000-digit integer or NaN is a 400
``/problems/malformed-json`` saying what was wrong, never FastAPI's "There was an error
parsing the body" and never a 500."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from protocols import json_strict
from protocols.json_strict import MAX_DEPTH, JsonRefused

JSON = {"Content-Type": "application/json"}


@pytest.fixture
def issuer(home):
    from issuer.api.auth import create_token
    from mcred.context import Context
    from mcred.service import create_app

    ctx = Context.open(home)
    token = create_token(ctx.sessions, ["operator"])[1]
    with TestClient(create_app(ctx, job_workers=1)) as client:
        client.headers["Authorization"] = f"Bearer {token}"
        yield client


@pytest.fixture
def reader():
    from mcred.present import reader_app
    from reader.http import ReaderService
    from reader.pipeline import ReaderPipeline
    from reader.relying_party import RelyingPartyService
    from reader.session import DEFAULT_REQUEST
    from reader.trust import TrustStore

    service = ReaderService(ReaderPipeline(TrustStore()), [DEFAULT_REQUEST], origin="https://rp.example")
    with TestClient(reader_app(service, RelyingPartyService([]))) as client:
        yield client


def _problem(r, status: int, slug: str) -> dict:
    assert r.status_code == status, (r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["type"] == f"/problems/{slug}" and body["status"] == status
    assert "error parsing the body" not in body["detail"]
    return body


def test_a_duplicate_member_is_refused_by_name_at_any_depth(issuer):
    r = issuer.post("/provisioning", content=b'{"phone_id": "a", "phone_id": "b"}', headers=JSON)
    body = _problem(r, 422, "validation")
    assert body["errors"][0]["location"] == "body.phone_id" and "'phone_id'" in body["detail"]
    nested = b'{"phone_id": "a", "holder": {"addresses": [{"city": "x", "city": "y"}]}}'
    body = _problem(issuer.post("/provisioning", content=nested, headers=JSON), 422, "validation")
    assert body["errors"] == [{"location": "body.holder.addresses.0.city",
                               "message": body["errors"][0]["message"]}]
    # application/*+json is JSON too; and no job was made of any of them
    r = issuer.post("/provisioning", content=b'{"a": 1, "a": 1}', headers={"Content-Type": "application/merge+json"})
    assert r.status_code == 422 and r.json()["errors"][0]["location"] == "body.a"
    assert issuer.get("/jobs").json()["jobs"] == []


@pytest.mark.parametrize(("body", "words"), [
    ('{"phone_id": "a"}'.encode("utf-16"), "UTF-16"),
    ('{"phone_id": "a"}'.encode("utf-16-le"), "UTF-16"),
    ('{"phone_id": "a"}'.encode("utf-32"), "UTF-32"),
    (b'\xef\xbb\xbf{"phone_id": "a"}', "byte order mark"),
    (b'{"phone_id": "\xe9t\xe9"}', "not UTF-8 (RFC 8259 8.1): invalid continuation byte at byte offset 14"),
    (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), f"nesting deeper than {MAX_DEPTH}"),
    (b"[" * 100_000, f"nesting deeper than {MAX_DEPTH}"),
    (b'{"phone_id": ' + b"7" * 5000 + b"}", "an integer of 5000 digits (more than 4300"),
    (b'{"phone_id": NaN}', "NaN is not JSON"),
])
def test_a_body_that_is_not_utf8_json_says_what_was_wrong(issuer, reader, body, words):
    for r in (issuer.post("/provisioning", content=body, headers=JSON),
              reader.post("/rp/jpki/verify", content=body, headers=JSON)):
        assert words in _problem(r, 400, "malformed-json")["detail"]


def test_the_reader_refuses_a_duplicate_and_its_raw_json_route_too(reader):
    r = reader.post("/rp/jpki/verify", content=b'{"content": "AA==", "signature": "AA==", "content": "QQ=="}',
                    headers=JSON)
    assert _problem(r, 422, "validation")["errors"][0]["location"] == "body.content"
    sid = reader.post("/online/sessions").json()["session"]
    twice = b'{"protocol": "org-iso-mdoc", "protocol": "openid4vp", "data": {}}'
    _problem(reader.post(f"/online/sessions/{sid}", content=twice, headers=JSON), 422, "validation")
    # a body sent without a Content-Type is read by the route itself, as strictly
    r = reader.post(f"/online/sessions/{sid}", content=twice)
    assert "comes more than once" in _problem(r, 400, "bad-request")["detail"]


def test_a_text_that_is_not_json_is_left_to_the_route_and_good_bodies_pass(issuer):
    r = issuer.post("/provisioning", content=b"not json", headers=JSON)
    assert _problem(r, 422, "validation")["errors"][0]["location"] == "body.0"
    r = issuer.post("/provisioning", content=b'{"phone_id": "none", "holder_id": "x", "pin": "1234", '
                    b'"password": "ABC123", "puk": "12345678", "ok": [1, 2.5, {"deep": [null, true]}]}',
                    headers=JSON)
    assert r.status_code != 400 and "more than once" not in r.text


def test_the_strict_reader_itself():
    assert json_strict.loads(b'{"a": [1, {"b": "\xc3\xa9"}], "c": -12}') == {"a": [1, {"b": "\u00e9"}], "c": -12}
    with pytest.raises(JsonRefused) as caught:
        json_strict.loads(b'{"x": {"y": 1, "z": 2, "y": 3}}')
    assert caught.value.kind == "duplicate" and caught.value.path == ("x", "y")
    with pytest.raises(JsonRefused, match="at byte offset 7"):
        json_strict.loads(b'["\xc3\xa9", x]')  # a character's position told in bytes
    assert json_strict.loads(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH) is not None
