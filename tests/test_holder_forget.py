"""Erasing a holder's personal data (``mcred holder forget``, ``POST /holders/{id}/forget``):
refused while a credential is live or a TSM job could still issue from the data; then the
card data and number and the mdoc bodies (portrait included) are gone, the certificates stay
in the CA's register, the records and the audit trail still read, and the holder cannot be
provisioned again from the registry."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from documented import check_every_answer
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import wallet_sim
from issuer.api.auth import create_token
from issuer.db import Credential, Holder
from issuer.revocation import revoke
from mcred.cli.main import app
from mcred.context import Context
from mcred.provision import parse_holder, provision
from mcred.service import create_app

HOLDER = {"family_name": "消去", "given_name": "花子", "family_name_kana": "ショウキョ",
          "given_name_kana": "ハナコ", "birth_date": "1950-05-05", "sex": 2,
          "address": "北海道札幌市中央区1-1", "prefecture": "北海道", "municipality": "札幌市"}


@pytest.fixture
def provisioned(home: Path, monkeypatch):
    monkeypatch.setattr(os, "fsync", lambda fd: None)
    ctx = Context.open(home)
    pid = wallet_sim.create_phone(home)
    result = provision(ctx, pid, parse_holder(HOLDER), key_type="p384", mdoc_batch=1, pin="2580",
                       password="FORGET42")
    return ctx, pid, result


def _cli(*args: str):
    return CliRunner().invoke(app, list(args))


def test_forget_after_revocation_erases_the_data_and_keeps_the_register(provisioned):
    ctx, pid, result = provisioned
    hid = result.holder_id
    with ctx.sessions() as s:
        card = s.get(Holder, hid).card_number
    assert card in json.dumps(json.loads(_cli("audit", "--json", "--limit", "1000").stdout))
    r = _cli("holder", "forget", hid, "--reason", "retention ended")
    assert r.exit_code == 2 and "live credential" in r.stderr
    revoke(ctx.sessions, pid, "affiliationChanged", actor="test")
    r = _cli("holder", "forget", hid, "--reason", "retention ended")
    assert r.exit_code == 0, r.output
    assert "1 mdoc(s) dropped, 2 certificate(s) kept" in r.stdout
    with ctx.sessions() as s:
        holder = s.get(Holder, hid)
        assert holder.data["erased"] is True and set(holder.data) == {"erased", "erased_at"}
        assert holder.card_number.startswith("erased-")
        creds = list(s.query(Credential).filter(Credential.holder_id == hid))
    assert {c.kind for c in creds if not c.body} == {"mdoc"} and all(c.meta["body_erased"] for c in creds
                                                                     if c.kind == "mdoc")
    assert all(c.body for c in creds if c.kind != "mdoc") and {c.status for c in creds} == {"revoked"}
    dump = json.dumps([h for h in json.loads(_cli("holder", "list", "--json").stdout)], ensure_ascii=False)
    assert "消去" not in dump and "札幌" not in dump and "(erased)" in dump
    mdoc = next(c.id for c in creds if c.kind == "mdoc")
    shown = _cli("credential", "show", mdoc, "--json")
    assert shown.exit_code == 0 and "erased" in json.loads(shown.stdout)["mso"]
    audit = json.loads(_cli("audit", "--action", "holder.forget", "--json").stdout)
    assert audit[0]["subject"] == hid and audit[0]["detail"]["reason"] == "retention ended"
    # the trail still says who registered and issued what, without the card's number (a
    # README walk-through found it in the holder.register and jpki.issue events)
    trail = json.loads(_cli("audit", "--json", "--limit", "1000").stdout)
    assert card not in json.dumps(trail) and audit[0]["detail"]["audit_details_redacted"] == 3
    assert {e["action"] for e in trail} >= {"holder.register", "jpki.issue"}
    assert "already erased" in _cli("holder", "forget", hid, "--reason", "again").stdout
    # the registry cannot provision the holder again, nor start a workflow: their data is gone
    r = _cli("provision", "--phone", wallet_sim.create_phone(ctx.home), "--holder-id", hid)
    assert r.exit_code != 0 and "erased" in r.output
    from issuer import handover as wf

    with pytest.raises(wf.WorkflowError, match="erased"):
        wf.create(ctx.sessions, kind="renewal", holder_id=hid, old_phone_id=pid, new_phone_id=None, actor="test")


def test_an_unfinished_tsm_job_blocks_the_erasure(home: Path, monkeypatch):
    monkeypatch.setattr(os, "fsync", lambda fd: None)
    ctx = Context.open(home)
    pid = wallet_sim.create_phone(home)

    class Crash(Exception):
        pass

    def crash(step: str) -> None:
        if step == "issue-auth-cert":
            raise Crash(step)

    with pytest.raises(Crash):
        provision(ctx, pid, parse_holder(HOLDER), key_type="p384", mdoc_batch=1, after_step=crash)
    with ctx.sessions() as s:
        hid = s.query(Holder).one().id
    r = _cli("holder", "forget", hid, "--reason", "withdrawn")
    assert r.exit_code == 2 and "mcred tsm abandon" in r.stderr


def test_forget_over_the_api_for_operators(provisioned):
    ctx, pid, result = provisioned
    app = create_app(ctx, job_workers=1)
    client = TestClient(app)
    checked = check_every_answer(client, app)  # both answers (erased, erased already) as documented
    operator = {"Authorization": f"Bearer {create_token(ctx.sessions, ['operator'])[1]}"}
    issuer = {"Authorization": f"Bearer {create_token(ctx.sessions, ['issuer'])[1]}"}
    url = f"/holders/{result.holder_id}/forget"
    assert client.post(url, json={"reason": "x"}, headers=issuer).status_code == 403
    busy = client.post(url, json={"reason": "retention ended"}, headers=operator)
    assert busy.status_code == 409 and busy.headers["content-type"].startswith("application/problem+json")
    revoke(ctx.sessions, pid, "affiliationChanged", actor="test")
    done = client.post(url, json={"reason": "retention ended"}, headers=operator)
    assert done.status_code == 200 and done.json()["mdoc_bodies_erased"] == 1 and not done.json()["already"]
    assert client.post(url, json={"reason": "again"}, headers=operator).json()["already"] is True
    assert checked.count("POST /holders/{holder_id}/forget 200") == 2
    assert client.post(f"/holders/{'0' * 32}/forget", json={"reason": "x"}, headers=operator).status_code == 404
    assert client.post(url, json={"reason": " "}, headers=operator).status_code == 422
