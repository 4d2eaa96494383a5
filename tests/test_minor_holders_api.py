"""Holders under 15 over the HTTP API: the signing password is required exactly when the
holder gets a signing certificate (the document says so), and ``POST /sign-issuances`` issues
one onto the phone once the holder has turned 15, as ``mcred jpki issue-sign`` does
(tests/test_minor_holders.py holds the command line and the rule itself)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from conftest import reveals
from fastapi.testclient import TestClient
from sqlalchemy import select
from test_api_flows import _wait
from test_minor_holders import HOLDER, _a_year_passes_to_15, _born_years_ago, _jpki, _kinds

import wallet_sim
from issuer.api.auth import create_token
from issuer.db import Holder
from mcred.api_models import Job
from mcred.context import Context
from mcred.service import create_app
from protocols import birthdays

SCOPES = ("tsm", "issuer", "operator", "reader")


@pytest.fixture
def api(home: Path, every_answer_checked: list[str]):
    """(context, client, headers by scope, the answers checked against the document)."""
    ctx = Context.open(home)
    tok = {s: {"Authorization": f"Bearer {create_token(ctx.sessions, [s])[1]}"} for s in SCOPES}
    with TestClient(create_app(ctx, job_workers=1)) as c:
        yield ctx, c, tok, every_answer_checked


def _provisioned(c: TestClient, tok: dict, years: int, **secrets: str) -> tuple[str, str]:
    """(phone, holder id) of a holder ``years`` old provisioned over the API."""
    phone = c.post("/phones", headers=tok["tsm"], json={"model": "minor"}).json()["id"]
    holder = dict(HOLDER, given_name="葵", birth_date=_born_years_ago(years))
    r = c.post("/provisioning", headers=tok["issuer"], json={
        "phone_id": phone, "holder": holder, "key_type": "p384", "mdoc_batch": 1, "pin": "2468", "puk": "24682468",
        **secrets})
    assert r.status_code == 202, r.text
    done = _wait(c, tok["issuer"], r.json()["id"], limit_s=60)
    assert done["state"] == "succeeded", done["error"]
    return phone, done["result"]["holder_id"]


def _refused(r, status: int, slug: str) -> dict:
    assert r.status_code == status and r.headers["content-type"] == "application/problem+json", r.text
    body = r.json()
    assert body["type"] == f"/problems/{slug}", body
    return body


def _password_refused(r, why: str) -> None:
    body = _refused(r, 422, "validation")
    assert body["errors"][0]["location"] == "body.password" and why in body["detail"], body


def _signs(ctx: Context, phone: str, password: str, serial: str) -> None:
    """The phone's SE signs with its signing key under ``password``, and the relying party
    verifies the signature up to the installation's signing root, by the certificate ``serial``."""
    from mcred.jpki_flow import jpki_issuer, sign_with_se
    from reader.relying_party import verify

    se = wallet_sim.open_secure_element(phone, ctx.home)
    cms, cert = sign_with_se(se.transmit, "sign", password.encode(), "申請書".encode())
    verdict = verify("申請書".encode(), cms, roots=jpki_issuer(ctx).roots("sign"), revocation="none")
    assert verdict["valid"], verdict
    from cryptography import x509

    assert format(x509.load_der_x509_certificate(cert).serial_number, "x") == serial


def test_the_document_states_when_the_signing_password_is_required(home: Path):
    """The request schemas no longer require ``password`` where a holder under 15 has none to
    give, and each says the rule; POST /sign-issuances requires it."""
    doc = create_app(Context.open(home), job_workers=1).openapi()
    schemas = doc["components"]["schemas"]
    for name in ("ProvisionRequest", "CardRenewal", "HandoverRunRequest"):
        schema = schemas[name]
        assert "password" not in schema.get("required", []), name
        rule = schema["properties"]["password"]["description"]
        assert "required when the holder gets a signing certificate" in rule and "under 15" in rule, (name, rule)
        assert "/sign-issuances" in rule, name
    assert {"pin", "puk"} <= set(schemas["ProvisionRequest"]["required"])
    body = doc["paths"]["/sign-issuances"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert "password" in schemas[body["$ref"].rsplit("/", 1)[1]]["required"]
    assert doc["paths"]["/sign-issuances"]["post"]["x-mcred-scope"] == "issuer"


def test_an_adult_without_a_signing_password_is_refused_and_a_child_with_one(api):
    """An adult's provisioning, card renewal or handover run without ``password``: 422 naming
    it, nothing recorded (before, each required it of a child too); a child's with one: 422."""
    ctx, c, tok, checked = api
    phone = c.post("/phones", headers=tok["tsm"], json={"model": "adult"}).json()["id"]
    adult = dict(HOLDER, birth_date=_born_years_ago(15))  # 15 today: an adult for the signing certificate
    body = {"phone_id": phone, "holder": adult, "key_type": "p384", "mdoc_batch": 1, "pin": "1357", "puk": "13571357"}
    _password_refused(c.post("/provisioning", headers=tok["issuer"], json=body), "required")
    with ctx.sessions() as s:
        assert s.scalars(select(Holder)).all() == []  # nothing registered

    # a registered adult (attached to a phone, not provisioned): a renewal and a handover run
    from issuer.holders import attach_phone, register
    from protocols.cardsub import parse_holder

    holder_id = register(ctx.sessions, parse_holder(adult))
    attach_phone(ctx.sessions, holder_id, phone)
    with ctx.sessions() as s:
        card = s.get(Holder, holder_id).card_number
    renewal = {"reason": "更新", "pin": "1357", "puk": "13571357"}
    _password_refused(c.post(f"/holders/{holder_id}/card-renewals", headers=tok["operator"], json=renewal),
                      "required")
    with ctx.sessions() as s:
        assert s.get(Holder, holder_id).card_number == card  # the new card not recorded
    new = c.post("/phones", headers=tok["tsm"], json={"model": "adult-new"}).json()["id"]
    r = c.post("/handovers", headers=tok["operator"], json={"kind": "model_change", "holder_id": holder_id,
                                                             "old_phone_id": phone, "new_phone_id": new})
    assert r.status_code == 201, r.text
    handover = r.json()["id"]
    _password_refused(c.post(f"/handovers/{handover}/run", headers=tok["operator"],
                             json={"pin": "1357", "puk": "13571357"}), "required")
    r = c.post(f"/handovers/{handover}/run", headers=tok["operator"], json={"password": "ALONE12"})
    assert _refused(r, 422, "validation") and "pin, puk missing" in r.text, r.text
    assert c.get(f"/handovers/{handover}", headers=tok["operator"]).json()["step"] == "created"

    # a child: one given is refused, naming the day from which one may be issued
    child = dict(HOLDER, given_name="蓮", birth_date=_born_years_ago(12))
    r = c.post("/provisioning", headers=tok["issuer"], json={**body, "holder": child, "password": "UNUSED12"})
    _password_refused(r, "under 15")
    assert birthdays.turns(dt.date.fromisoformat(child["birth_date"]), 15).isoformat() in r.json()["detail"]
    assert {"POST /provisioning 422", "POST /holders/{holder_id}/card-renewals 422",
            "POST /handovers/{handover_id}/run 422"} <= set(checked)


def test_a_childs_card_renewal_takes_no_signing_password(api):
    """カードの更新 of a 10-year-old over the API: without ``password`` (before: required, then
    not used) it re-issues the phone with no signing key; with one, 422."""
    ctx, c, tok, checked = api
    phone, holder_id = _provisioned(c, tok, 10)
    renewal = {"reason": "有効期限の更新", "pin": "9753", "puk": "97539753"}
    _password_refused(c.post(f"/holders/{holder_id}/card-renewals", headers=tok["operator"],
                             json={**renewal, "password": "UNUSED99"}), "under 15")
    r = c.post(f"/holders/{holder_id}/card-renewals", headers=tok["operator"], json=renewal)
    assert r.status_code == 202, r.text
    done = _wait(c, tok["operator"], r.json()["job"]["id"], limit_s=60)
    assert done["state"] == "succeeded" and done["result"]["state"] == "done", done
    assert [k for k in _kinds(ctx, phone) if k[1] == "valid"] == [("jpki-auth", "valid"), ("mdoc", "valid")]
    assert _jpki(ctx, phone)["secrets"]["signing_password"]["set"] is False
    assert "POST /holders/{holder_id}/card-renewals 202" in checked


def test_a_holder_who_turned_15_gets_a_signing_certificate_over_the_api(api):
    """POST /sign-issuances: refused while the holder is 14 (409, naming the day, also as
    ``signing_certificate_from``), to a reader's or the TSM's token (403), for an unknown phone
    (404) and without a password (422); once they are 15, a job whose result is the
    certificate (never the password), the SE signs with it and the relying party verifies;
    a second one is refused while it lives, and so is one on a phone without a live
    user-authentication certificate. Every answer held to the document."""
    ctx, c, tok, checked = api
    phone, holder_id = _provisioned(c, tok, 14)
    assert _kinds(ctx, phone) == [("jpki-auth", "valid"), ("mdoc", "valid")]
    ask = {"phone_id": phone, "password": "TEEN15PW"}
    early = _refused(c.post("/sign-issuances", headers=tok["issuer"], json=ask), 409, "provisioning-refused")
    with ctx.sessions() as s:
        birth = dt.date.fromisoformat(s.get(Holder, holder_id).data["birth_date"])
    assert "under 15" in early["detail"] and early["signing_certificate_from"] == birthdays.turns(birth, 15).isoformat()
    for scope in ("reader", "tsm"):
        _refused(c.post("/sign-issuances", headers=tok[scope], json=ask), 403, "forbidden")
    _refused(c.post("/sign-issuances", headers=tok["issuer"], json={**ask, "phone_id": "no-such-phone"}),
             404, "unknown-phone")
    r = c.post("/sign-issuances", headers=tok["issuer"], json={"phone_id": phone})
    assert _refused(r, 422, "validation")["errors"][0]["location"] == "body.password", r.text
    assert _kinds(ctx, phone) == [("jpki-auth", "valid"), ("mdoc", "valid")]  # nothing ran

    _a_year_passes_to_15(ctx, holder_id)
    r = c.post("/sign-issuances", headers=tok["issuer"], json=ask)
    assert r.status_code == 202 and r.headers["location"] == f"/jobs/{r.json()['id']}", r.text
    assert r.json()["kind"] == "issue-sign" and r.json()["params"] == {"phone_id": phone, "over_the_air": False}
    done = _wait(c, tok["issuer"], r.json()["id"], limit_s=60)
    assert done["state"] == "succeeded", done["error"]
    result = done["result"]
    assert result["phone_id"] == phone and result["holder_id"] == holder_id and result["resumed"] is False
    job = Job.model_validate(done).root
    assert type(job).__name__ == "IssueSignJob" and job.result.sign_certificate.serial == result["sign_certificate"][
        "serial"]
    assert not reveals(json.dumps(done), "TEEN15PW")
    assert _kinds(ctx, phone) == [("jpki-auth", "valid"), ("jpki-sign", "valid"), ("mdoc", "valid")]
    tsm_job = c.get("/tsm-jobs", headers=tok["issuer"], params={"phone_id": phone}).json()["jobs"][-1]
    assert tsm_job["id"] == result["tsm_job_id"] and tsm_job["kind"] == "issue-sign" and tsm_job["state"] == "done"
    _signs(ctx, phone, "TEEN15PW", result["sign_certificate"]["serial"])

    again = _refused(c.post("/sign-issuances", headers=tok["issuer"], json=ask), 409, "provisioning-refused")
    assert "live signing certificate" in again["detail"]
    r = c.post("/revocations", headers=tok["issuer"], json={"phone_id": phone, "reason": "keyCompromise",
                                                             "credential": "jpki"})
    assert r.status_code == 200, r.text
    gone = _refused(c.post("/sign-issuances", headers=tok["issuer"], json=ask), 409, "provisioning-refused")
    assert "no live user-authentication certificate" in gone["detail"], gone
    assert {"POST /sign-issuances 202", "POST /sign-issuances 409", "POST /sign-issuances 404",
            "POST /sign-issuances 403", "POST /sign-issuances 422", "GET /jobs/{job_id} 200"} <= set(checked)


class Crash(Exception):
    pass


def test_a_stopped_issue_sign_job_is_finished_by_the_apis_resume(api):
    """An issue-sign TSM job that stopped (a crash after its key and certificate): POST
    /sign-issuances refuses to start another (409 naming the job and the route that finishes
    it), POST /tsm-jobs/{id}/resume finishes it with the password it sealed (a result of the
    kind it resumes), and the phone signs with that password."""
    from mcred.provision import issue_sign

    ctx, c, tok, checked = api
    phone, holder_id = _provisioned(c, tok, 14)
    _a_year_passes_to_15(ctx, holder_id)

    def crash(step: str) -> None:
        if step == "write-sign-cert":
            raise Crash(step)

    with pytest.raises(Crash):
        issue_sign(ctx, phone, password="SEALED15", after_step=crash)
    (stopped,) = c.get("/tsm-jobs", headers=tok["issuer"], params={"phone_id": phone, "unfinished": True}).json()["jobs"]
    assert stopped["kind"] == "issue-sign"
    busy = _refused(c.post("/sign-issuances", headers=tok["issuer"], json={"phone_id": phone, "password": "OTHER15"}),
                    409, "provisioning-refused")
    assert f"/tsm-jobs/{stopped['id']}/resume" in busy["detail"]
    r = c.post(f"/tsm-jobs/{stopped['id']}/resume", headers=tok["issuer"])
    assert r.status_code == 202, r.text
    done = _wait(c, tok["issuer"], r.json()["id"], limit_s=60)
    assert done["state"] == "succeeded", done["error"]
    assert done["params"]["kind"] == "issue-sign" and done["result"]["resumed"] is True
    assert done["result"]["tsm_job_id"] == stopped["id"]
    assert type(Job.model_validate(done).root.result).__name__ == "IssueSignJobResult"
    assert not reveals(json.dumps(done), "SEALED15")
    _signs(ctx, phone, "SEALED15", done["result"]["sign_certificate"]["serial"])
    assert "POST /tsm-jobs/{job_id}/resume 202" in checked
