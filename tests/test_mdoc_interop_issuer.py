"""An mdoc issued by the issuer into a phone slot verifies with our verifier and with
pymdoccbor; its MSO's status reference resolves over HTTP to a signed list that says
VALID, then SUSPENDED after a hold and INVALID after a revocation (issue 5, "Done when")."""

from __future__ import annotations

import datetime as dt
import urllib.parse

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import sessionmaker

from issuer import revocation
from issuer.api import problems
from issuer.api.mdoc import routers
from issuer.holders import attach_phone, register
from issuer.keystore import MemoryKeyStore
from issuer.mdoc.issuance import make_proof
from issuer.mdoc.service import MdocService
from mcred.db import make_engine, migrate
from protocols import cbor, cose
from protocols.cardsub import DEFAULT_NAMES, ISO_NAMESPACE, parse_holder
from protocols.mdoc import (
    DeviceResponse,
    IssuerSigned,
    SessionTranscript,
    build_document,
    verify_device_response,
)
from protocols.status import Status, verify_status_list_token

pymdoccbor = pytest.importorskip("pymdoccbor")
from pymdoccbor.mdoc.verifier import MdocCbor  # noqa: E402

#: every answer a TestClient gets held to its app's OpenAPI document, refusals too
pytestmark = pytest.mark.usefixtures("every_answer_checked")

HOLDER = {
    "family_name": "佐藤", "given_name": "太郎", "family_name_kana": "サトウ",
    "given_name_kana": "タロウ", "birth_date": "1985-07-07", "sex": 1,
    "address": "大阪府大阪市北区中之島1-3-20", "prefecture": "大阪府", "municipality": "大阪市",
    "family_name_roman": "SATO", "given_name_roman": "TARO",
}


@pytest.fixture
def issued(db_url):
    engine = make_engine(db_url)
    migrate(engine)
    sessions = sessionmaker(engine, expire_on_commit=False)
    svc = MdocService(sessions, MemoryKeyStore(), "http://issuer.test")
    holder_id = register(sessions, parse_holder(HOLDER))
    attach_phone(sessions, holder_id, "phone-x")
    device = ec.generate_private_key(ec.SECP256R1())
    spki, proof = make_proof(device, svc.mdoc_challenge("job-x", "phone-x", 0))
    body = svc.issue_mdoc("job-x", "phone-x", 0, spki, proof)
    app = FastAPI()
    for r in routers(lambda: svc):
        app.include_router(r)
    problems.install(app)  # refusals as `mcred serve` answers them: problems, declared
    yield svc, sessions, device, body, TestClient(app)
    engine.dispose()


def _transcript() -> SessionTranscript:
    reader = ec.generate_private_key(ec.SECP256R1())
    return SessionTranscript.build(cbor.dumps({0: "1.0"}), cose.CoseKey.from_public_key(reader.public_key()))


def test_issued_mdoc_verifies_with_ours_and_pymdoccbor(issued):
    svc, _, device, body, client = issued
    st = _transcript()
    wanted = {DEFAULT_NAMES.namespace: ["family_name", "age_over_20"],
              ISO_NAMESPACE: ["family_name", "birth_date", "age_over_18"]}
    doc = build_document(IssuerSigned.from_cbor(body), st, disclose=wanted,
                         signer=cose.key_signer(device))
    response = DeviceResponse((doc,)).encode()
    iaca_pem = client.get("/trust/iaca.pem")
    assert iaca_pem.status_code == 200
    root = svc.iaca_certificate()
    result = verify_device_response(response, trust_anchors=[root], session_transcript=st,
                                    now=dt.datetime.now(dt.UTC))
    assert result.valid, result.failed()
    (disclosed,) = result.documents
    assert disclosed.doc_type == DEFAULT_NAMES.doctype
    theirs = MdocCbor()
    theirs.loads(response)
    assert theirs.verify(trusted_root_certs=[root])


def _status(client, root, ref) -> int:
    path = urllib.parse.urlsplit(ref.uri).path
    reply = client.get(path)
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/statuslist+cwt"
    token = verify_status_list_token(reply.content, trust_anchor=root, uri=ref.uri,
                                     now=dt.datetime.now(dt.UTC))
    return token.status(ref.idx)


def test_status_reference_resolves_and_follows_hold_and_revocation(issued):
    svc, sessions, _, body, client = issued
    ref = IssuerSigned.from_cbor(body).mso().status.status_list
    assert ref.uri.startswith("http://issuer.test/status/")
    root = svc.iaca_certificate()
    assert _status(client, root, ref) == Status.VALID
    path = urllib.parse.urlsplit(ref.uri).path
    first = client.get(path)
    assert first.headers["cache-control"].startswith("public, max-age=")
    again = client.get(path, headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    revocation.hold(sessions, "phone-x", "mdoc")
    assert _status(client, root, ref) == Status.SUSPENDED
    moved = client.get(path, headers={"If-None-Match": first.headers["etag"]})
    assert moved.status_code == 200 and moved.headers["etag"] != first.headers["etag"]
    revocation.revoke(sessions, "phone-x", "affiliationChanged", "mdoc")
    assert _status(client, root, ref) == Status.INVALID


def test_unknown_list_is_404_and_trust_material_is_served(issued):
    _, _, _, _, client = issued
    assert client.get("/status/..%2F..").status_code == 404  # no route: the app's own 404
    for path in ("/status/ffffffffffffffffffffffffffffffff", "/status/no-such", "/identifiers/ffff"):
        r = client.get(path)
        assert r.status_code == 404, path  # a type of ours, as every other refusal, not about:blank
        assert r.json()["type"] == "/problems/unknown-status-list", path
    assert client.get("/trust/iaca.der").headers["content-type"] == "application/pkix-cert"
    crl = client.get("/trust/iaca.crl")
    assert crl.status_code == 200 and crl.headers["content-type"] == "application/pkix-crl"
