"""``POST /sign-issuances`` with ``over_the_air``: a holder provisioned at 14 over the air
(no signing certificate), once 15, gets one written to the phone in the holder's hands
through its GP SERAM Local Agent, as the other TSM jobs are (tests/test_seram.py); the
phone's SE then signs with it and the relying party verifies."""

from __future__ import annotations

import os

import httpx
from test_minor_holders import HOLDER, _a_year_passes_to_15, _born_years_ago
from test_seram import _answered_over_the_air, phone  # noqa: F401 - the fixture

import wallet_sim
from mcred.context import Context


def test_a_signing_certificate_is_issued_over_the_air_once_the_holder_is_15(home, phone, monkeypatch):  # noqa: F811
    from cryptography import x509
    from documented import check_every_served_answer
    from test_present_http import Server

    from benchmarks.scratch import free_port
    from issuer.api.auth import create_token
    from mcred.jpki_flow import jpki_issuer, sign_with_se
    from mcred.service import create_app
    from reader.relying_party import verify

    monkeypatch.setattr(os, "fsync", lambda fd: None)
    pid, phone_home = phone
    port = free_port()
    monkeypatch.setenv("MCRED_PUBLIC_URL", f"http://127.0.0.1:{port}")
    ctx = Context.open(home)
    issuer = {"Authorization": f"Bearer {create_token(ctx.sessions, ['issuer'])[1]}"}
    teen = dict(HOLDER, given_name="葵", birth_date=_born_years_ago(14))
    app = create_app(ctx, job_workers=1)
    with Server(app, port) as server, httpx.Client(base_url=server.url) as c:
        checked = check_every_served_answer(monkeypatch, {server.url: app})
        r = c.post("/provisioning", headers=issuer, json={
            "phone_id": pid, "holder": teen, "key_type": "p384", "mdoc_batch": 1, "pin": "2468",
            "puk": "24682468", "over_the_air": True})
        job, agent = _answered_over_the_air(c, issuer, r, pid, phone_home)
        assert job["state"] == "succeeded" and agent.result.notifications == ["provision/done/OK"], job
        assert job["result"]["sign_certificate"] is None
        holder_id = job["result"]["holder_id"]

        ask = {"phone_id": pid, "password": "TEEN15PW", "over_the_air": True}
        early = c.post("/sign-issuances", headers=issuer, json=ask)
        assert early.status_code == 409 and "under 15" in early.json()["detail"], early.text  # no session opened
        assert c.post("/sign-issuances", headers=issuer, json={**ask, "over_the_air": False}).status_code == 404  # not here

        _a_year_passes_to_15(ctx, holder_id)
        r = c.post("/sign-issuances", headers=issuer, json=ask)
        assert r.json()["params"] == {"phone_id": pid, "over_the_air": True}, r.text
        job, agent = _answered_over_the_air(c, issuer, r, pid, phone_home)
        assert job["state"] == "succeeded", job["error"]
        assert agent.result.notifications == ["issue-sign/done/OK"] and agent.result.apdus == len(agent.sent)
        serial = job["result"]["sign_certificate"]["serial"]

    se = wallet_sim.open_secure_element(pid, phone_home)  # the phone in the holder's hands signs
    cms, cert = sign_with_se(se.transmit, "sign", b"TEEN15PW", "申請書".encode())
    assert format(x509.load_der_x509_certificate(cert).serial_number, "x") == serial
    verdict = verify("申請書".encode(), cms, roots=jpki_issuer(ctx).roots("sign"), revocation="none")
    assert verdict["valid"], verdict
    assert {"POST /provisioning 202", "POST /sign-issuances 202", "POST /sign-issuances 409",
            "GET /jobs/{job_id} 200"} <= set(checked)
