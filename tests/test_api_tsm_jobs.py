"""A provisioning whose TSM job stopped, through the API (specs/api.md, "TSM jobs"): the
failed API job names the TSM job and the two ways out; `GET /tsm-jobs` lists it; `POST
/tsm-jobs/{id}/resume` finishes it as a new API job; `POST /tsm-jobs/{id}/abandon` gives it
up (what it issued revoked, the SE wiped, the phone let go). Before, a client could neither
finish nor give up such a job, and the phone refused every new provisioning."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import person, reveals
from fastapi.testclient import TestClient
from test_api_flows import _wait

import wallet_sim
from issuer.api.auth import create_token
from issuer.db import Phone
from mcred.context import Context
from mcred.provision import ProvisioningUnfinishedError, parse_holder, provision
from mcred.service import create_app

#: every answer of the flows, refusals too, held to the OpenAPI document (tests/documented.py)
pytestmark = pytest.mark.usefixtures("every_answer_checked")

HOLDER = {"family_name": "途中", "given_name": "止子", "family_name_kana": "トチュウ",
          "given_name_kana": "トメコ", "birth_date": "1979-12-24", "sex": 2,
          "address": "京都府京都市中京区1-1", "prefecture": "京都府", "municipality": "京都市"}
SECRETS = {"pin": "4321", "password": "STOP42", "puk": "87654321"}


class Crash(Exception):
    pass


def _stopped(ctx: Context, at: str = "issue-auth-cert", **holder: str) -> str:
    """A phone whose provisioning (of HOLDER with ``holder``'s changes) died after ``at``
    ran; its id."""
    pid = wallet_sim.create_phone(ctx.home)

    def crash(step: str) -> None:
        if step == at:
            raise Crash(step)

    with pytest.raises(Crash):
        provision(ctx, pid, parse_holder(dict(HOLDER, **holder)), key_type="p384", mdoc_batch=1, after_step=crash)
    return pid


def test_a_stopped_provisioning_is_resumed_or_abandoned_over_the_api(home: Path, monkeypatch):
    monkeypatch.setattr(os, "fsync", lambda fd: None)
    ctx = Context.open(home)
    tok = {s: {"Authorization": f"Bearer {create_token(ctx.sessions, [s])[1]}"}
           for s in ("tsm", "issuer", "reader")}
    first = _stopped(ctx)
    with TestClient(create_app(ctx, job_workers=2)) as c:
        listed = c.get("/tsm-jobs", headers=tok["issuer"], params={"unfinished": True}).json()["jobs"]
        assert [(j["phone_id"], j["kind"], j["next_step"]) for j in listed] == [
            (first, "provision", "issue-auth-cert")]
        tsm_job = listed[0]["id"]
        for scope in ("tsm", "reader"):
            assert c.get("/tsm-jobs", headers=tok[scope]).status_code == 403
            assert c.post(f"/tsm-jobs/{tsm_job}/abandon", headers=tok[scope],
                          json={"reason": "x"}).status_code == 403
        # a new provisioning of the phone (for another person) fails, naming the TSM job and
        # both ways out
        r = c.post("/provisioning", headers=tok["issuer"],
                   json={"phone_id": first, "holder": person(HOLDER), "key_type": "p384", **SECRETS})
        failed = _wait(c, tok["issuer"], r.json()["id"])
        assert failed["state"] == "failed" and failed["error"]["type"] == "ProvisioningUnfinishedError"
        assert f"/tsm-jobs/{tsm_job}/resume" in failed["error"]["detail"]
        assert f"/tsm-jobs/{tsm_job}/abandon" in failed["error"]["detail"]
        # the same person again (the holder record, or by id) is told the same at once, not
        # that the phone "already holds" their credentials and wants an mdoc refresh or a
        # renewal: its provisioning stopped half-way, and is finished or given up
        with ctx.sessions() as s:
            stopped_holder = s.get(Phone, first).holder_id
        for again in ({"holder": HOLDER}, {"holder_id": stopped_holder}):
            r = c.post("/provisioning", headers=tok["issuer"],
                       json={"phone_id": first, **again, "key_type": "p384", **SECRETS})
            said = r.json()["detail"]
            assert r.status_code == 409 and "already holds" not in said, r.json()
            assert f"unfinished provisioning job {tsm_job}" in said and f"/tsm-jobs/{tsm_job}/resume" in said
        with pytest.raises(ProvisioningUnfinishedError, match=f"unfinished provisioning job {tsm_job}"):
            provision(ctx, first, parse_holder(HOLDER), key_type="p384", mdoc_batch=1)
        # resumed: a new API job, the sealed secrets reused, none shown
        r = c.post(f"/tsm-jobs/{tsm_job}/resume", headers=tok["issuer"])
        assert r.status_code == 202, r.json()
        done = _wait(c, tok["issuer"], r.json()["id"])
        assert done["state"] == "succeeded", done["error"]
        assert done["result"]["tsm_job_id"] == tsm_job and done["result"]["mdocs"] == 1
        assert not reveals(json.dumps(done["result"]), "4321")
        r = c.post(f"/tsm-jobs/{tsm_job}/resume", headers=tok["issuer"])
        assert r.status_code == 409 and r.json()["type"] == "/problems/conflict"
        r = c.post(f"/tsm-jobs/{tsm_job}/abandon", headers=tok["issuer"], json={"reason": "late"})
        assert r.status_code == 409 and "is done" in r.json()["detail"]
        # the provisioned holder is not provisioned afresh onto another phone: that is a handover
        other = wallet_sim.create_phone(ctx.home)
        r = c.post("/provisioning", headers=tok["issuer"], json={
            "phone_id": other, "holder_id": done["result"]["holder_id"], "key_type": "p384", **SECRETS})
        assert r.status_code == 409 and "handover" in r.json()["detail"], r.json()

        # a phone with a small SE through the API: its memory is what was asked
        small = c.post("/phones", headers=tok["tsm"], json={"nvm_bytes": 65536})
        assert small.status_code == 201 and small.json()["nvm_bytes"] == 65536
        shown = c.get(f"/phones/{small.json()['id']}", headers=tok["tsm"]).json()
        assert shown["secure_element"]["memory"]["nvm_capacity"] == 65536
        for bad in (1, (64 << 20) + 1, "64K", 65536.0, True):
            assert c.post("/phones", headers=tok["tsm"], json={"nvm_bytes": bad}).status_code == 422, bad
        # another phone stops; this one is given up
        second = _stopped(ctx, "write-sign-cert", given_name="次子")
        (job2,) = [j["id"] for j in c.get("/tsm-jobs", headers=tok["issuer"],
                                          params={"phone_id": second}).json()["jobs"]]
        for bad in ({}, {"reason": ""}, {"reason": "   "}, {"reason": "x" * 201}, {"reason": "x", "y": 1},
                    {"reason": "\x00"}, {"reason": "a\nb"}, {"reason": 5}):
            r = c.post(f"/tsm-jobs/{job2}/abandon", headers=tok["issuer"], json=bad)
            assert r.status_code == 422, (bad, r.json())
        assert c.post(f"/tsm-jobs/{'0' * 32}/abandon", headers=tok["issuer"],
                      json={"reason": "x"}).status_code == 404
        assert c.post("/tsm-jobs/nope/abandon", headers=tok["issuer"], json={"reason": "x"}).status_code == 422
        r = c.post(f"/tsm-jobs/{job2}/abandon", headers=tok["issuer"], json={"reason": "device returned"})
        assert r.status_code == 200, r.json()
        out = r.json()
        again = c.post(f"/tsm-jobs/{job2}/abandon", headers=tok["issuer"], json={"reason": "again", "over_the_air": True})
        assert again.status_code == 409 and "nothing to abandon" in again.json()["detail"], again.json()
        assert out["phone"] == second and out["wiped"] is True and out["released_holder"]
        assert [x["kind"] for x in out["revoked"]] == ["jpki-sign"]
        creds = c.get("/credentials", headers=tok["issuer"], params={"phone_id": second}).json()["credentials"]
        assert [(x["status"], x["reason"]) for x in creds] == [("revoked", "cessationOfOperation")]
        r = c.post(f"/tsm-jobs/{job2}/resume", headers=tok["issuer"])
        assert r.status_code == 409 and "abandoned" in r.json()["detail"]
        assert c.get("/tsm-jobs", headers=tok["issuer"], params={"unfinished": True}).json()["jobs"] == []
        # the holder is found over the API as from the CLI (`mcred holder list`)
        listed = {h["id"]: h for h in c.get("/holders", headers=tok["issuer"]).json()["holders"]}
        released = listed[out["released_holder"]]
        assert released["phones"] == [] and released["live"] == 0 and released["name"] == "途中 次子"
        one = c.get(f"/holders/{out['released_holder']}", headers=tok["issuer"]).json()
        assert one["data"]["given_name_kana"] == "トメコ" and "portrait" not in one["data"]
        assert c.get(f"/holders/{'0' * 32}", headers=tok["issuer"]).status_code == 404
        by_card = c.get("/holders", headers=tok["issuer"], params={"card_number": released["card_number"]}).json()
        assert [h["id"] for h in by_card["holders"]] == [out["released_holder"]]
        paged = c.get("/holders", headers=tok["issuer"], params={"limit": 1, "offset": 1}).json()
        assert len(paged["holders"]) == 1 and paged["limit"] == 1 and paged["offset"] == 1
        for bad in ({"limit": 0}, {"limit": 1001}, {"offset": -1}, {"card_number": "12"}):
            assert c.get("/holders", headers=tok["issuer"], params=bad).status_code == 422, bad
        assert c.get("/holders", headers=tok["tsm"]).status_code == 403
        # the phone takes its holder again
        r = c.post("/provisioning", headers=tok["issuer"], json={
            "phone_id": second, "holder_id": out["released_holder"], "key_type": "p384", "mdoc_batch": 1,
            **SECRETS})
        again = _wait(c, tok["issuer"], r.json()["id"])
        assert again["state"] == "succeeded", again["error"]


def test_a_stopped_mdoc_refresh_is_resumed_over_the_api(home: Path, monkeypatch):
    from test_tsm_abandon import _stopped_refresh

    monkeypatch.setattr(os, "fsync", lambda fd: None)
    ctx = Context.open(home)
    tok = {"Authorization": f"Bearer {create_token(ctx.sessions, ['issuer'])[1]}"}
    pid = _stopped_refresh(ctx, "write-mdoc")
    with TestClient(create_app(ctx, job_workers=1)) as c:
        (job,) = c.get("/tsm-jobs", headers=tok, params={"phone_id": pid, "unfinished": True}).json()["jobs"]
        assert job["kind"] == "refresh-mdoc" and job["next_step"] == "write-mdoc"
        r = c.post(f"/tsm-jobs/{job['id']}/resume", headers=tok)
        assert r.status_code == 202, r.json()
        done = _wait(c, tok, r.json()["id"])
        assert done["state"] == "succeeded", done["error"]
        assert done["result"]["job"] == job["id"] and len(done["result"]["superseded"]) == 1
        assert c.get("/tsm-jobs", headers=tok, params={"unfinished": True}).json()["jobs"] == []
        every = c.get("/tsm-jobs", headers=tok).json()["jobs"]
        assert len(every) == 2  # the provisioning and the refresh, oldest first
        page = c.get("/tsm-jobs", headers=tok, params={"limit": 1, "offset": 1}).json()
        assert [j["id"] for j in page["jobs"]] == [every[1]["id"]] == [job["id"]]
        for bad in ({"limit": 0}, {"limit": 1001}, {"offset": -1}):
            assert c.get("/tsm-jobs", headers=tok, params=bad).status_code == 422, bad
        # credentials page the same way, in a stable order
        every = [x["id"] for x in c.get("/credentials", headers=tok).json()["credentials"]]
        paged = [x["id"] for o in range(len(every)) for x in c.get(
            "/credentials", headers=tok, params={"limit": 1, "offset": o}).json()["credentials"]]
        assert paged == every and len(every) == 4  # 2 JPKI, the old MSO and the refreshed one
