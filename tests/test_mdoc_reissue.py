"""A signer compromised, its phones re-issued (specs/issuer-keys.md, "An IACA revoked" and
"Re-issuing after a compromise"): ``mcred mdoc iaca revoke`` takes the IACA out of trust
(readers that take the bundle refuse every mdoc under it) and names its phones; ``mcred mdoc
reissue --signer`` refreshes each (new device keys in the SE, new MSOs under the current
signers), reporting a phone it could not refresh without stopping the others, and finds only
the phones left when run again. The same over HTTP (POST /trust/iaca-revocations, POST
/mdoc-reissues, operator only), and after a document signer's revocation."""

from __future__ import annotations

import json
import os

import pytest
from api_helpers import bearer, wait_job
from documented import check_every_answer
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

import wallet_sim
from issuer.db import Credential
from issuer.revocation import hold, release
from mcred.cli.main import app
from mcred.context import Context
from mcred.doctor import _mdoc_signers_out_of_use
from mcred.drills import Env
from mcred.mdoc_flow import mdoc_service
from mcred.provision import parse_holder, provision
from wallet_sim.phone import phone_dir

HOLDERS = [{"family_name": "高橋", "given_name": name, "family_name_kana": "タカハシ",
            "given_name_kana": kana, "birth_date": "1979-11-23", "sex": 1,
            "address": f"福岡県福岡市中央区天神1-8-{n}", "prefecture": "福岡県", "municipality": "福岡市"}
           for n, (name, kana) in enumerate((("一郎", "イチロウ"), ("二郎", "ジロウ"), ("三郎", "サブロウ")), 1)]


@pytest.fixture
def ctx(home, monkeypatch):
    monkeypatch.setattr(os, "fsync", lambda fd: None)
    return Context.open(home)


def _phones(ctx, n: int) -> list[str]:
    out = []
    for holder in HOLDERS[:n]:
        pid = wallet_sim.create_phone(ctx.home)
        provision(ctx, pid, parse_holder(holder), key_type="p384", mdoc_batch=1)
        out.append(pid)
    return out


def _cli(*args: str) -> tuple[int, str]:
    out = CliRunner().invoke(app, list(args))
    return out.exit_code, out.output


def _flat(out: str) -> str:
    """Text output with rich's line wrapping undone (where it wraps depends on the length of
    the phone ids and times said, not on what is said)."""
    return " ".join(out.split())


def test_a_phone_refused_is_reported_and_stops_no_other(ctx, monkeypatch):
    import mcred.provision
    from mcred.reissue import reissue_signed_by

    p1, p2 = _phones(ctx, 2)
    mdoc_service(ctx).rollover_ds()
    real = mcred.provision.refresh_mdocs

    def refresh(c, phone_id, **kw):  # noqa: ANN001, ANN202 - the first phone's refresh refused
        if phone_id == p1:
            raise mcred.provision.ProvisionError(f"phone {phone_id!r}: refused for this test")
        return real(c, phone_id, **kw)

    monkeypatch.setattr(mcred.provision, "refresh_mdocs", refresh)
    seen = []
    report = reissue_signed_by(ctx, "mdoc-ds-1", workers=2, progress=lambda p, n, total: seen.append((n, total)))
    got = {p.phone_id: (p.outcome, p.detail) for p in report.phones}
    assert got[p1] == ("refused", f"phone {p1!r}: refused for this test") and got[p2][0] == "reissued"
    assert not report.done and sorted(seen) == [(1, 2), (2, 2)] and report.revoked is None
    assert _signers(ctx, p2) == {"mdoc-ds-2"} and _signers(ctx, p1) == {"mdoc-ds-1"}


def _signers(ctx, pid: str) -> set[str]:
    with ctx.sessions() as s:
        return set(s.scalars(select(Credential.issuer_key).where(
            Credential.phone_id == pid, Credential.kind == "mdoc", Credential.status == "valid")))


def test_an_iaca_revoked_on_the_command_line_and_its_phones_reissued(ctx):
    p1, p2, p3 = _phones(ctx, 3)
    env = Env(ctx)
    captured = env.present(p1)
    assert env.reader_verdict(*captured) == (True, "VALID")
    code, out = _cli("mdoc", "reissue", "--signer", "1")
    assert code == 2 and "mdoc-iaca-1 is the IACA signing now" in _flat(out), out

    code, out = _cli("mdoc", "iaca", "revoke", "1", "--reason", "cACompromise", "--json")
    assert code == 0, out
    done = json.loads(out)
    assert (done["label"], done["reason"], done["changed"]) == ("mdoc-iaca-1", "cACompromise", True)
    assert done["affected_phones"] == sorted([p1, p2, p3]) and done["affected_mdocs"] == 3
    assert done["successor"]["label"] == "mdoc-iaca-2" and done["successor"]["staged_since"] is None
    listed = {r["label"]: r for r in json.loads(_cli("mdoc", "iaca", "list", "--json")[1])}
    assert listed["mdoc-iaca-1"]["state"] == "revoked" and not listed["mdoc-iaca-1"]["trusted"]
    assert listed["mdoc-iaca-2"]["state"] == "current"
    code, out = _cli("mdoc", "iaca", "list")
    assert "mdoc-iaca-1" in out and "revoked (cACompromise)" in _flat(out), out

    # the operator's doctor says what is left to do
    f = _mdoc_signers_out_of_use(ctx)
    assert not f.ok and "mdoc-iaca-1: 3 phone(s)" in f.detail and f.fix == "mcred mdoc reissue --signer mdoc-iaca-1"

    fresh = Env(ctx)  # a reader that took the bundle after the revocation
    for pid in (p1, p2):
        ok, why = fresh.reader_verdict(*fresh.present(pid))
        assert not ok and "issuer_certificate_chain" in why, why

    # one phone reported lost (its mdocs on hold), one whose SE is not on this machine (a
    # phone provisioned over the air): both named, the third re-issued
    hold(ctx.sessions, p3)
    away = phone_dir(p2, ctx.home)
    away.rename(away.with_name("elsewhere"))
    code, out = _cli("mdoc", "reissue", "--signer", "mdoc-iaca-1", "--json")
    assert code == 1, out
    report = json.loads(out)
    outcomes = {p["phone"]: p for p in report["phones"]}
    assert (report["signer"], report["purpose"], report["revoked"]) == ("mdoc-iaca-1", "iaca", "cACompromise")
    assert (report["reissued"], report["not_here"], report["on_hold"], report["done"]) == (1, 1, 1, False)
    assert outcomes[p1]["outcome"] == "reissued" and outcomes[p1]["mdocs"] == 1
    assert outcomes[p2]["outcome"] == "not-here" and "--over-the-air" in outcomes[p2]["detail"]
    assert outcomes[p3]["outcome"] == "on-hold" and "mcred release" in outcomes[p3]["detail"]
    assert _signers(ctx, p1) == {"mdoc-ds-2"}
    assert fresh.reader_verdict(*fresh.present(p1)) == (True, "VALID")
    ok, why = fresh.reader_verdict(*captured)
    assert not ok, why

    # back, and found: run again, only the phones left are taken (the text names them)
    away.with_name("elsewhere").rename(away)
    release(ctx.sessions, p3)
    code, out = _cli("mdoc", "reissue", "--signer", "mdoc-iaca-1")
    assert code == 0 and "2 phone(s) re-issued" in _flat(out) and p2 in out and p3 in out and p1 not in out, out
    for pid in (p2, p3):
        assert _signers(ctx, pid) == {"mdoc-ds-2"}
        assert fresh.reader_verdict(*fresh.present(pid)) == (True, "VALID")
    code, out = _cli("mdoc", "reissue", "--signer", "mdoc-iaca-1")
    assert code == 0 and "no phone holds a valid mdoc of mdoc-iaca-1" in _flat(out), out
    f = _mdoc_signers_out_of_use(ctx)
    assert f.ok and f.detail == "no valid mdoc of a revoked signer (1 IACA(s) revoked)"
    code, out = _cli("mdoc", "reissue", "--signer", "mdoc-ds-7")
    assert code == 2 and "no document signer or IACA" in _flat(out), out
    code, out = _cli("mdoc", "iaca", "revoke", "9", "--reason", "cACompromise")
    assert code == 2 and "no IACA generation" in _flat(out), out
    code, out = _cli("mdoc", "iaca", "revoke", "2", "--reason", "certificateHold")
    assert code == 2 and "cACompromise" in _flat(out), out
    assert mdoc_service(ctx).iaca_certificate() == fresh.iaca  # nothing refused changed anything


def test_iaca_revocation_and_reissue_over_http_operator_only(ctx):
    from mcred.service import create_app

    (p1,) = _phones(ctx, 1)
    api = create_app(ctx, job_workers=1)
    client = TestClient(api)
    checked = check_every_answer(client, api)
    tok = bearer(ctx.sessions, ["operator", "issuer"])
    body = {"iaca": "mdoc-iaca-1", "reason": "cACompromise"}
    assert client.post("/trust/iaca-revocations", json=body, headers=tok["issuer"]).status_code == 403
    r = client.post("/trust/iaca-revocations", json={**body, "iaca": "7"}, headers=tok["operator"])
    assert r.status_code == 404 and r.json()["type"] == "/problems/unknown-iaca"
    r = client.post("/trust/iaca-revocations", json={**body, "reason": "certificateHold"}, headers=tok["operator"])
    assert r.status_code == 422
    r = client.post("/mdoc-reissues", json={"signer": "mdoc-iaca-1"}, headers=tok["operator"])
    assert r.status_code == 409 and "signing now" in r.json()["detail"], r.text

    # a document signer revoked first: its phone re-issued under the next DS of the same IACA
    r = client.post("/trust/ds-revocations", json={"ds": "mdoc-ds-1", "reason": "keyCompromise"},
                    headers=tok["operator"])
    assert r.status_code == 200, r.text
    assert client.post("/mdoc-reissues", json={"signer": "mdoc-ds-1"}, headers=tok["issuer"]).status_code == 403
    r = client.post("/mdoc-reissues", json={"signer": "mdoc-ds-1"}, headers=tok["operator"])
    assert r.status_code == 202, r.text
    job = wait_job(client, tok["operator"], r.json()["id"], 60)
    assert job["state"] == "succeeded", job
    assert job["result"]["done"] and job["result"]["phones"][0]["phone"] == p1
    assert _signers(ctx, p1) == {"mdoc-ds-2"}

    # then the IACA itself
    r = client.post("/trust/iaca-revocations", json=body, headers=tok["operator"])
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["changed"] and got["affected_phones"] == [p1] and got["successor"]["label"] == "mdoc-iaca-2"
    assert set(got["retired_signers"]) == {"mdoc-ds-2", "mdoc-status-1"}
    assert not client.post("/trust/iaca-revocations", json=body, headers=tok["operator"]).json()["changed"]
    r = client.post("/mdoc-reissues", json={"signer": "1", "workers": 2}, headers=tok["operator"])
    job = wait_job(client, tok["operator"], r.json()["id"], 60)
    assert job["state"] == "succeeded" and job["result"]["reissued"] == 1, job
    assert _signers(ctx, p1) == {"mdoc-ds-3"}
    env = Env(ctx)
    assert env.reader_verdict(*env.present(p1)) == (True, "VALID")
    r = client.post("/mdoc-reissues", json={"signer": "mdoc-ds-99"}, headers=tok["operator"])
    assert r.status_code == 404 and r.json()["type"] == "/problems/unknown-signer"
    assert {"POST /trust/iaca-revocations 200", "POST /mdoc-reissues 202"} <= set(checked)
    api.state.jobs.shutdown()
