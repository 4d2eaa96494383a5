"""A drill run through the API on an installation that has already served holders (specs/drills.md).

Found by an API test: on one SQLite installation, after a provisioning, a PIN reset (PUK),
a holder's address move (``basic_four_change``) and a card renewal, all through the API, a
``death`` drill (``POST /drills``) ended ``passed: false``, "not refused by ['reader'] 32 s
after the request", where a fresh installation passed in seconds. Not load: each of those
steps took under two seconds. The move and the renewal each published the status list
(their ``publish`` step) with the issuer's ttl of 300 s; the drill then shortens the ttl to
its own 2 s, but the publisher kept serving the stored token, signed with ``ttl`` 300, as
long as the list's version had not moved. The drill's reader warmed its cache with that
token at the capture and, honouring its ttl, did not fetch the list the death revoked in
for five minutes. The publisher now rebuilds a stored token that the current policy would
not sign as it is (its ttl or lifetime changed).
"""

from __future__ import annotations

import time
from pathlib import Path

from fastapi.testclient import TestClient

from issuer.api.auth import create_token
from mcred.context import Context
from mcred.drills import DRILL_TTL
from mcred.service import create_app

HOLDER = {"family_name": "順番", "given_name": "次郎", "family_name_kana": "ジュンバン",
          "given_name_kana": "ジロウ", "birth_date": "1979-03-03", "sex": 1,
          "address": "福岡県福岡市中央区3-3", "prefecture": "福岡県", "municipality": "福岡市"}


def _wait(c: TestClient, h: dict, job_id: str, limit_s: float = 90) -> dict:
    from test_api_flows import _wait as wait

    return wait(c, h, job_id, limit_s=limit_s)


def test_a_death_drill_after_provision_pin_reset_move_and_renewal_through_the_api(home: Path):
    ctx = Context.open(home)
    tok = {s: {"Authorization": f"Bearer {create_token(ctx.sessions, [s])[1]}"} for s in ("tsm", "issuer", "operator")}
    took: dict[str, float] = {}
    with TestClient(create_app(ctx, job_workers=2)) as c:
        def run(name: str, scope: str, method: str, path: str, body: dict) -> dict:
            t0 = time.perf_counter()
            r = c.request(method, path, headers=tok[scope], json=body)
            assert r.status_code == 202, r.text
            view = r.json()
            j = _wait(c, tok[scope], view["job"]["id"] if "job" in view else view["id"])
            took[name] = time.perf_counter() - t0
            assert j["state"] == "succeeded", (name, j["error"])
            return j

        phone = c.post("/phones", headers=tok["tsm"], json={"model": "sequence"}).json()["id"]
        holder_id = run("provision", "issuer", "POST", "/provisioning", {
            "phone_id": phone, "holder": HOLDER, "key_type": "p384", "mdoc_batch": 1,
            "pin": "1111", "password": "FIRST11", "puk": "11112222"})["result"]["holder_id"]
        run("pin reset", "issuer", "POST", "/pin-resets", {
            "phone_id": phone, "slots": ["auth", "sign"], "pin": "4826", "password": "SCHEMA7", "puk": "70315264"})
        run("holder change", "operator", "POST", f"/holders/{holder_id}/changes",
            {"reason": "転居", "address": "福岡県福岡市博多区4-4"})
        run("card renewal", "operator", "POST", f"/holders/{holder_id}/card-renewals",
            {"reason": "更新", "pin": "5937", "password": "RENEW88", "puk": "81426375"})
        drill = run("drill", "operator", "POST", "/drills", {"scenario": "death", "phones": 1})["result"]
    assert drill["passed"], (drill["error"], took)
    assert drill["status_list_ttl_s"] == DRILL_TTL
    (subject,) = drill["subjects"]
    assert "revoked (INVALID)" in subject["reader_reason"], subject
    # the reader sees the death within the workflow's time and the drill's ttl, not the 30 s
    # the drill waits at most (a loaded machine may add a few seconds, never the 300 s ttl)
    assert subject["reader_propagation_s"] < DRILL_TTL + 15, (subject, took)


def test_a_drill_gives_the_servers_status_lists_their_own_ttl_back(home: Path):
    """A drill shortens the ttl the issuer publishes its Status List Tokens with, so that its
    reader sees a change within seconds. Run by ``POST /drills`` it shares the API server's
    registry, which then published 2 s lists to every reader until the server restarted:
    the ttl is the issuer's own again once the drill is done."""
    from mcred.mdoc_flow import mdoc_service

    ctx = Context.open(home)
    own = mdoc_service(ctx).registry.policy.ttl
    assert own != DRILL_TTL
    tok = {"Authorization": f"Bearer {create_token(ctx.sessions, ['operator'])[1]}"}
    with TestClient(create_app(ctx, job_workers=1)) as c:
        view = c.post("/drills", headers=tok, json={"scenario": "lost_found", "phones": 1}).json()
        j = _wait(c, tok, view["id"], limit_s=180)
        assert j["state"] == "succeeded" and j["result"]["passed"], j
        assert j["result"]["status_list_ttl_s"] == DRILL_TTL
        assert mdoc_service(ctx).registry.policy.ttl == own
