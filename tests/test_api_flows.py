"""The capabilities through the API, end to end on one installation: a phone made by a
``tsm`` token, provisioned by an ``issuer`` token as a job, held and released, then a death
workflow run by an ``operator`` token as a job, every credential revoked with the reason."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from api_helpers import wait_job
from documented import check_every_answer
from fastapi.testclient import TestClient

from issuer.api.auth import create_token
from mcred.context import Context
from mcred.service import create_app

#: every answer of the flows, refusals too, held to the OpenAPI document (tests/documented.py)
pytestmark = pytest.mark.usefixtures("every_answer_checked")

HOLDER = {"family_name": "流れ", "given_name": "花子", "family_name_kana": "ナガレ",
          "given_name_kana": "ハナコ", "birth_date": "1985-03-04", "sex": 2,
          "address": "大阪府大阪市北区1-1", "prefecture": "大阪府", "municipality": "大阪市"}


def _wait(c: TestClient, h: dict, job_id: str, limit_s: float = 30) -> dict:
    """The job once it has ended (api_helpers.wait_job)."""
    return wait_job(c, h, job_id, limit_s)


def test_provision_hold_release_and_death_through_the_api(home: Path):
    ctx = Context.open(home)
    app = create_app(ctx, job_workers=2)
    tok = {s: {"Authorization": f"Bearer {create_token(ctx.sessions, [s])[1]}"}
           for s in ("tsm", "issuer", "operator")}
    with TestClient(app) as c:
        # every 2xx body of this flow (phones, holders, credentials, holds, handovers, audit)
        # is the one the document declares
        checked = check_every_answer(c, app)
        phone = c.post("/phones", headers=tok["tsm"], json={"model": "flow"}).json()["id"]
        assert c.get(f"/phones/{phone}", headers=tok["tsm"]).json()["id"] == phone

        r = c.post("/provisioning", headers=tok["issuer"], json={
            "phone_id": phone, "holder": HOLDER, "key_type": "p384", "mdoc_batch": 1,
            "pin": "4321", "password": "FLOW42", "puk": "87654321"})
        assert r.status_code == 202 and r.headers["location"] == f"/jobs/{r.json()['id']}"
        job = _wait(c, tok["issuer"], r.json()["id"])
        assert job["state"] == "succeeded", job["error"]
        # a secret standing alone; "4321" inside a random hex serial or fingerprint is no leak
        for secret in ("4321", "FLOW42", "87654321"):
            assert not re.search(rf"(?<![0-9A-Za-z]){secret}(?![0-9A-Za-z])", str(job)), secret
        holder_id = job["result"]["holder_id"]
        # a holder the registry does not have is named at the door, not as the job's failure
        r = c.post("/provisioning", headers=tok["issuer"], json={
            "phone_id": phone, "holder_id": "0" * 32, "pin": "4321", "password": "FLOW42", "puk": "87654321"})
        assert r.status_code == 404 and r.json()["type"] == "/problems/not-found", r.json()

        creds = c.get("/credentials", headers=tok["issuer"],
                      params={"phone_id": phone}).json()["credentials"]
        assert sorted(x["kind"] for x in creds) == ["jpki-auth", "jpki-sign", "mdoc"]
        assert all(x["status"] == "valid" for x in creds)

        # fresh MSOs: a job; the old MSO is superseded (a tsm token may not ask for it)
        assert c.post("/mdoc-refreshes", headers=tok["tsm"], json={"phone_id": phone}).status_code == 403
        r = c.post("/mdoc-refreshes", headers=tok["issuer"], json={"phone_id": "ph-nope"})
        assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
        r = c.post("/mdoc-refreshes", headers=tok["issuer"], json={"phone_id": phone})
        assert r.status_code == 202
        job = _wait(c, tok["issuer"], r.json()["id"])
        assert job["state"] == "succeeded", job["error"]
        assert job["result"]["rotated_keys"] == 1 and len(job["result"]["superseded"]) == 1
        mdocs = {x["id"]: x for x in c.get("/credentials", headers=tok["issuer"], params={
            "phone_id": phone, "kind": "mdoc"}).json()["credentials"]}
        superseded = job["result"]["superseded"][0]
        assert mdocs[superseded]["reason"] == "superseded"
        assert mdocs[job["result"]["issued"][0]["credential"]]["status"] == "valid"

        held = c.post("/holds", headers=tok["issuer"], json={"phone_id": phone}).json()
        assert {x["after"] for x in held["changes"]} == {"hold"}
        # no refresh while on hold: the job fails and says why, nothing is issued
        r = c.post("/mdoc-refreshes", headers=tok["issuer"], json={"phone_id": phone})
        job = _wait(c, tok["issuer"], r.json()["id"])
        assert job["state"] == "failed" and "on hold" in str(job["error"]), job
        released = c.post("/holds/release", headers=tok["issuer"],
                          json={"phone_id": phone, "credential": "auth"}).json()
        assert [x["kind"] for x in released["changes"]] == ["jpki-auth"]

        # A workflow acts on its holder's phones only, and hands over to a phone that exists;
        # a refusal records nothing
        other = c.post("/phones", headers=tok["tsm"], json={"model": "flow"}).json()["id"]
        for bad, status, slug in (
                ({"kind": "lost_confirmed", "old_phone_id": other}, 409, "workflow-error"),
                ({"kind": "model_change", "old_phone_id": phone, "new_phone_id": phone}, 409, "workflow-error"),
                ({"kind": "model_change", "old_phone_id": phone, "new_phone_id": "ph-nope"}, 404,
                 "unknown-phone")):
            r = c.post("/handovers", headers=tok["operator"], json={"holder_id": holder_id, **bad})
            assert r.status_code == status and r.json()["type"] == f"/problems/{slug}", r.json()
        audit = c.get("/audit", headers=tok["operator"]).json()["events"]
        assert not any(e["action"].startswith("workflow.create") for e in audit)

        # An issuer token may not run workflows; an operator token may.
        body = {"kind": "death", "holder_id": holder_id, "old_phone_id": phone}
        assert c.post("/handovers", headers=tok["issuer"], json=body).status_code == 403
        hid = c.post("/handovers", headers=tok["operator"], json=body).json()["id"]
        r = c.post(f"/handovers/{hid}/run", headers=tok["operator"])
        assert r.status_code == 202
        job = _wait(c, tok["operator"], r.json()["id"])
        assert job["state"] == "succeeded", job["error"]
        assert c.get(f"/jobs/{job['id']}", headers=tok["issuer"]).status_code == 404
        assert c.get(f"/handovers/{hid}", headers=tok["operator"]).json()["state"] == "done"

        creds = c.get("/credentials", headers=tok["issuer"],
                      params={"phone_id": phone}).json()["credentials"]
        assert {x["status"] for x in creds} == {"revoked"}
        assert {x["reason"] for x in creds if x["id"] != superseded} == {"affiliationChanged"}
        actions = {e["action"] for e in c.get("/audit", headers=tok["operator"]).json()["events"]}
        assert {"credential.revoke", "credential.hold", "credential.release"} <= actions
        assert c.get("/phones", headers=tok["tsm"]).json()["phones"]
        assert c.get("/holders", headers=tok["issuer"]).json()["holders"]
        assert c.get(f"/holders/{holder_id}", headers=tok["issuer"]).json()["data"]
        assert c.get(f"/credentials/{superseded}", headers=tok["issuer"]).json()["id"] == superseded
        tsm_jobs = c.get("/tsm-jobs", headers=tok["operator"]).json()["jobs"]
        assert tsm_jobs and all(j["created_at"].endswith("+00:00") and j["updated_at"] >= j["created_at"]
                                for j in tsm_jobs), tsm_jobs
        assert c.post(f"/phones/{other}/factory-reset", headers=tok["tsm"]).json()["reset"] is True
        assert {"GET /credentials 200", "POST /holds 200", "POST /holds/release 200", "POST /handovers 201",
                "GET /handovers/{handover_id} 200", "GET /audit 200", "GET /holders/{holder_id} 200",
                "GET /tsm-jobs 200", "POST /phones 201", "GET /phones/{phone_id} 200"} <= set(checked), checked


def test_the_issuer_service_reader_checks_an_issuer_signed_as_issued(home: Path, tmp_path: Path, monkeypatch):
    """POST /reader/issuer-signed/verify (reader scope) on an mdoc from `mcred mdoc issue`:
    the installation's reader trusts its IACA, so the issuer-side checks and the profiles
    pass; no device authentication is listed."""
    import json

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from typer.testing import CliRunner

    from mcred.cli.main import app as cli

    monkeypatch.setenv("MCRED_HOME", str(home))
    (tmp_path / "holder.json").write_text(json.dumps(HOLDER, ensure_ascii=False))
    (tmp_path / "device.pem").write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    r = CliRunner().invoke(cli, ["mdoc", "issue", "--holder", str(tmp_path / "holder.json"), "--device-key",
                                 str(tmp_path / "device.pem"), "--out", str(tmp_path / "issued.cbor")])
    assert r.exit_code == 0, r.output
    ctx = Context.open(home)
    reader = {"Authorization": f"Bearer {create_token(ctx.sessions, ['reader'])[1]}"}
    with TestClient(create_app(ctx, job_workers=1)) as c:
        issued = (tmp_path / "issued.cbor").read_bytes()
        assert c.post("/reader/issuer-signed/verify", content=issued).status_code == 401
        answer = c.post("/reader/issuer-signed/verify", content=issued, headers=reader)
        assert answer.status_code == 200, answer.text
        checks = {x["name"]: x for x in answer.json()["checks"]}
        for name in ("issuer_certificate_chain", "issuer_signature", "value_digests", "validity", "iaca_profile",
                     "ds_profile", "trust_anchor_scope"):
            assert checks[name]["passed"], checks[name]
        assert "device_authentication" not in checks


def test_the_longest_token_name_acts_through_the_api_on_every_backend(home: Path, db_url: str):
    """Every write a token makes records its actor, ``token:<id>:<name>``: the issuer's
    audit, the API's job, the TSM's job and its SE lock (``<actor>/<8 hex>``). PostgreSQL
    refuses a value longer than its column where SQLite keeps it: a token with a name of 90
    to 128 characters (all that tokens allowed) got HTTP 500 from every such write on
    PostgreSQL, and one of 81 to 89 a refresh job failed as "SE locked by another worker"."""
    from issuer.api.auth import NAME_MAX

    ctx = Context.open(home, db_url)
    name = "長" * NAME_MAX  # PostgreSQL counts characters, not bytes
    token_id, token = create_token(ctx.sessions, ["operator"], name)
    tok = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(ctx, job_workers=2)) as c:
        phone = c.post("/phones", headers=tok, json={"model": "actor"}).json()["id"]
        r = c.post("/provisioning", headers=tok, json={
            "phone_id": phone, "holder": HOLDER, "key_type": "p384", "mdoc_batch": 1,
            "pin": "4321", "password": "FLOW42", "puk": "87654321"})
        assert r.status_code == 202, r.text
        job = _wait(c, tok, r.json()["id"])
        assert job["state"] == "succeeded", job["error"]
        r = c.post("/mdoc-refreshes", headers=tok, json={"phone_id": phone, "keep_keys": True})
        assert r.status_code == 202, r.text
        job = _wait(c, tok, r.json()["id"])
        assert job["state"] == "succeeded", job["error"]
        assert c.post("/holds", headers=tok, json={"phone_id": phone}).status_code == 200
        actors = {e["actor"] for e in c.get("/audit", headers=tok).json()["events"]}
    assert f"token:{token_id}:{name}" in actors


def test_an_actor_always_fits_the_columns_that_record_it():
    """A name stored before its bound (SQLite kept any length) is cut, never the token id."""
    from issuer.api.auth import ACTOR_MAX, NAME_MAX, Principal

    longest = Principal("a" * 32, "n" * NAME_MAX, frozenset())
    assert len(longest.actor) == ACTOR_MAX
    legacy = Principal("a" * 32, "n" * 128, frozenset())
    assert len(legacy.actor) == ACTOR_MAX and legacy.actor.startswith(f"token:{'a' * 32}:n")


def test_every_201_names_where_its_resource_is_and_the_name_is_followed(home: Path):
    """``Location`` on a 201 is where a client finds what it made: ``POST /phones`` and
    ``POST /handovers`` sent none, and the reader inside ``mcred serve`` (under ``/reader``)
    named its sessions as the stand-alone reader does, ``/online/sessions/{id}``, which is
    no route of this service (404): each now names its own path, and following it works."""
    from issuer.holders import attach_phone, register

    ctx = Context.open(home)
    app = create_app(ctx, job_workers=1)
    h = {"Authorization": f"Bearer {create_token(ctx.sessions, ['operator'])[1]}"}
    with TestClient(app, headers=h) as c:
        r = c.post("/phones", json={})
        assert r.status_code == 201 and r.headers["location"] == f"/phones/{r.json()['id']}"
        phone = r.json()["id"]
        assert c.get(r.headers["location"]).json()["id"] == phone

        holder_id = register(ctx.sessions, HOLDER)
        attach_phone(ctx.sessions, holder_id, phone)
        r = c.post("/handovers", json={"kind": "death", "holder_id": holder_id, "old_phone_id": phone})
        assert r.status_code == 201 and r.headers["location"] == f"/handovers/{r.json()['id']}"
        assert c.get(r.headers["location"]).json()["id"] == r.json()["id"]

        r = c.post("/reader/online/sessions")
        sid = r.json()["session"]
        assert r.status_code == 201 and r.headers["location"] == f"/reader/online/sessions/{sid}"
        r = c.post(r.headers["location"], json={})  # the session is there: a bad answer, not an unknown session
        assert r.status_code == 400, r.text
        r = c.post("/reader/online/sessions", params={"protocol": "openid4vp-cross-device"})
        sid = r.json()["session"]
        assert r.status_code == 201 and r.headers["location"] == f"/reader/sessions/{sid}/result"
        assert c.get(r.headers["location"]).status_code == 409  # awaiting the wallet
    app.state.jobs.shutdown()


def test_a_model_change_over_http_sets_the_holders_own_secrets_and_is_listed(home: Path, tmp_path: Path):
    """A shop's system moving a holder to a new phone over the API: the run's body carries
    the PIN, password and PUK the holder chose for the new phone (before, they were
    generated and shown to nobody, and the holder could not use the phone until a PIN
    reset). GET /handovers lists workflows by state."""
    from typer.testing import CliRunner

    from mcred.cli.main import app as cli

    ctx = Context.open(home)
    app = create_app(ctx, job_workers=2)
    op = {"Authorization": f"Bearer {create_token(ctx.sessions, ['operator'])[1]}"}
    with TestClient(app) as c:
        checked = check_every_answer(c, app)
        old = c.post("/phones", headers=op, json={"model": "shop"}).json()["id"]
        new = c.post("/phones", headers=op, json={"model": "shop"}).json()["id"]
        r = c.post("/provisioning", headers=op, json={
            "phone_id": old, "holder": HOLDER, "key_type": "p384", "mdoc_batch": 1,
            "pin": "4321", "password": "FLOW42", "puk": "87654321"})
        holder_id = _wait(c, op, r.json()["id"])["result"]["holder_id"]
        hid = c.post("/handovers", headers=op, json={"kind": "model_change", "holder_id": holder_id,
                                                     "old_phone_id": old, "new_phone_id": new}).json()["id"]
        # all three or none; nothing runs on a refusal
        r = c.post(f"/handovers/{hid}/run", headers=op, json={"pin": "2468", "password": "SHOP2026"})
        assert r.status_code == 422 and "puk missing" in r.text, r.text
        assert c.get("/handovers", headers=op, params={"state": "running"}).json()["handovers"][0]["id"] == hid
        r = c.post(f"/handovers/{hid}/run", headers=op, json={"pin": "2468", "password": "SHOP2026",
                                                              "puk": "13572468"})
        job = _wait(c, op, r.json()["id"])
        assert job["state"] == "succeeded", job["error"]
        assert job["result"]["new_phones_with_generated_secrets"] == []
        # its steps are the token's in the audit trail (they were recorded as "api")
        steps = [e for e in c.get("/audit", headers=op, params={"subject": hid}).json()["events"]
                 if e["action"].startswith("workflow.step.")]
        created = [e for e in c.get("/audit", headers=op, params={"subject": hid}).json()["events"]
                   if e["action"] == "workflow.create.model_change"]
        assert created[0]["actor"].startswith("token:"), created
        assert steps and {e["actor"] for e in steps} == {created[0]["actor"]}, steps
        assert "2468" not in str(job) and "SHOP2026" not in str(job)
        # the holder's own password signs on the new phone
        (tmp_path / "pw").write_text("SHOP2026")
        (tmp_path / "doc.txt").write_text("契約書")
        signed = CliRunner().invoke(cli, ["jpki", "sign", "--phone", new, "--slot", "sign", "--pin-file",
                                          str(tmp_path / "pw"), str(tmp_path / "doc.txt")])
        assert signed.exit_code == 0, signed.output
        # provisioned already: new secrets would go nowhere
        r = c.post(f"/handovers/{hid}/run", headers=op, json={"pin": "1111", "password": "AGAIN1",
                                                              "puk": "11112222"})
        assert r.status_code == 409 and "pin-resets" in r.json()["detail"], r.json()
        listed = c.get("/handovers", headers=op, params={"state": "done", "holder_id": holder_id}).json()
        assert [h["id"] for h in listed["handovers"]] == [hid] and listed["limit"] == 100
        assert c.get("/handovers", headers=op, params={"state": "failed"}).json()["handovers"] == []
        assert c.get("/handovers", headers=op, params={"state": "stuck"}).status_code == 422
        # a workflow that provisions no phone takes no secrets
        hid = c.post("/handovers", headers=op, json={"kind": "death", "holder_id": holder_id,
                                                     "old_phone_id": new}).json()["id"]
        r = c.post(f"/handovers/{hid}/run", headers=op, json={"pin": "1111", "password": "AGAIN1",
                                                              "puk": "11112222"})
        assert r.status_code == 422 and "provisions no phone" in r.json()["detail"], r.json()
        assert "GET /handovers 200" in checked
