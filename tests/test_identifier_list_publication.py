"""The Identifier List (ISO/IEC 18013-5 2nd edition ``identifier_list``) published beside
each status list (issue 5): MSOs carry ``{id, uri}`` when the issuance policy says so; a
revocation or a hold lists the MSO's id, a release removes it; the token is signed by the
status-list signer chained to the IACA, served at ``/identifiers/{list id}`` with the
status lists' ETag / Cache-Control / 304 behaviour, and ``mcred status-list show`` decodes
and verifies it. Both database backends."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient
from mdoc_world import HOLDER, mdoc_world
from typer.testing import CliRunner

from issuer import revocation
from issuer.mdoc.issuance import IssuancePolicy, make_proof
from protocols.mdoc import IssuerSigned
from protocols.status import (
    StatusListClaimError,
    verify_identifier_list_token,
    verify_status_list_token,
)

#: every answer a TestClient gets held to its app's OpenAPI document, refusals too
pytestmark = pytest.mark.usefixtures("every_answer_checked")

NOW = dt.datetime(2026, 12, 3, 3, 0, tzinfo=dt.UTC)


def _service(db_url, identifier_list: bool):
    return mdoc_world(db_url, NOW, phones=2, issuance_policy=IssuancePolicy(identifier_list=identifier_list))


def _issue(svc, phone: str) -> IssuerSigned:
    key = ec.generate_private_key(ec.SECP256R1())
    spki, proof = make_proof(key, svc.mdoc_challenge(f"job-{phone}", phone, 0))
    return IssuerSigned.from_cbor(svc.issue_mdoc(f"job-{phone}", phone, 0, spki, proof))


def _ids(svc, list_id: str, at: dt.datetime) -> frozenset[bytes]:
    published = svc.identifier_token(list_id, at)
    token = verify_identifier_list_token(published.token, trust_anchor=svc.iaca_certificate(),
                                         uri=published.uri, now=at)
    return token.identifier_list.identifiers


def test_revocation_and_hold_list_the_msos_id_release_removes_it(db_url):
    engine, sessions, clock, svc = _service(db_url, identifier_list=True)
    one, two = (_issue(svc, p).mso().status for p in ("phone-1", "phone-2"))
    list_id = one.status_list.uri.rsplit("/", 1)[1]
    assert one.identifier_list.uri == f"http://issuer.test/identifiers/{list_id}"
    assert two.identifier_list.uri == one.identifier_list.uri  # beside the same status list
    assert len(one.identifier_list.id) == 16 and one.identifier_list.id != two.identifier_list.id
    assert _ids(svc, list_id, NOW) == frozenset()
    first = svc.identifier_token(list_id, NOW)
    assert svc.identifier_token(list_id, NOW).etag == first.etag  # stored, not re-signed

    clock.now = at = NOW + dt.timedelta(minutes=1)
    revocation.revoke(sessions, "phone-1", "cessationOfOperation", "mdoc")
    assert _ids(svc, list_id, at) == {one.identifier_list.id}
    assert svc.identifier_token(list_id, at).etag != first.etag
    revocation.hold(sessions, "phone-2", "mdoc")
    assert _ids(svc, list_id, at) == {one.identifier_list.id, two.identifier_list.id}
    revocation.release(sessions, "phone-2", "mdoc")
    assert _ids(svc, list_id, at) == {one.identifier_list.id}
    # the status list says the same, and the two tokens cannot be taken for each other
    status = svc.status_token(list_id, at)
    sl = verify_status_list_token(status.token, trust_anchor=svc.iaca_certificate(),
                                  uri=status.uri, now=at)
    assert sl.status(one.status_list.idx) == 1 and sl.status(two.status_list.idx) == 0
    with pytest.raises(StatusListClaimError):
        verify_status_list_token(svc.identifier_token(list_id, at).token,
                                 trust_anchor=svc.iaca_certificate(), uri=status.uri, now=at)
    # MSOs past their validity (30 days) leave the list at the next rebuild
    clock.now = later = NOW + dt.timedelta(days=31)
    revocation.hold(sessions, "phone-2", "mdoc")
    assert _ids(svc, list_id, later) == frozenset()
    engine.dispose()


def test_default_policy_issues_no_identifier_but_publishes_an_empty_list(db_url):
    engine, sessions, _clock, svc = _service(db_url, identifier_list=False)
    status = _issue(svc, "phone-1").mso().status
    assert status.identifier_list is None and status.status_list is not None
    revocation.revoke(sessions, "phone-1", "keyCompromise", "mdoc")
    list_id = status.status_list.uri.rsplit("/", 1)[1]
    assert _ids(svc, list_id, NOW) == frozenset()
    engine.dispose()


def test_http_route_cache_headers_and_status_list_show(home, tmp_path, monkeypatch):
    from mcred.cli.main import app as cli
    from mcred.context import Context
    from mcred.service import create_app

    monkeypatch.setenv("MCRED_MDOC_IDENTIFIER_LIST", "1")
    holder, key, out = tmp_path / "h.json", tmp_path / "k.pem", tmp_path / "m.cbor"
    holder.write_text(json.dumps(HOLDER, ensure_ascii=False))
    key.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    runner = CliRunner()
    facts = json.loads(runner.invoke(cli, ["mdoc", "issue", "--holder", str(holder),
                                           "--device-key", str(key), "--out", str(out),
                                           "--json"]).output)
    ref = IssuerSigned.from_cbor(out.read_bytes()).mso().status.identifier_list
    path = ref.uri.removeprefix(Context.open(home).public_url)
    assert path.startswith("/identifiers/")
    ctx = Context.open(home)
    app = create_app(ctx, job_workers=1)
    client = TestClient(app)
    r = client.get(path)
    assert r.status_code == 200 and r.headers["content-type"] == "application/identifierlist+cwt"
    assert r.headers["cache-control"] == "public, max-age=300" and r.headers["etag"]
    assert client.get(path, headers={"If-None-Match": r.headers["etag"]}).status_code == 304
    assert client.get("/identifiers/nosuchlist").status_code == 404
    assert client.get("/identifiers/x%2Fy").status_code == 404

    revocation.revoke(ctx.sessions, facts["phone"], "affiliationChanged", "mdoc")
    r2 = client.get(path, headers={"If-None-Match": r.headers["etag"]})
    assert r2.status_code == 200 and r2.headers["etag"] != r.headers["etag"]
    token, iaca = tmp_path / "ids.cwt", tmp_path / "iaca.pem"
    token.write_bytes(r2.content)
    assert runner.invoke(cli, ["export", "iaca", "--out", str(iaca)]).exit_code == 0
    shown = runner.invoke(cli, ["status-list", "show", str(token), "--trust-anchor", str(iaca),
                                "--json", "--revocation", "none"])
    assert shown.exit_code == 0, shown.output
    shown = json.loads(shown.output)
    assert shown["typ"] == "application/identifierlist+cwt"
    assert shown["verified"] == "valid (the signer's revocation not checked)"
    assert shown["identifiers"] == [ref.id.hex()] and shown["sub"] == ref.uri
    # --index, a status list's, looked nothing up in an identifier list and said so nowhere
    indexed = runner.invoke(cli, ["status-list", "show", str(token), "--index", "0", "--json"])
    assert indexed.exit_code == 2 and "leave out --index" in json.loads(indexed.output)["error"], indexed.output
    # credential show prints the MSO's identifier as hex
    cred = json.loads(runner.invoke(cli, ["credential", "list", "--json"]).output)[0]["id"]
    mso = json.loads(runner.invoke(cli, ["credential", "show", cred, "--json"]).output)["mso"]
    assert mso["status"]["identifier_list"] == {"id": ref.id.hex(), "uri": ref.uri}
    app.state.jobs.shutdown()
