"""``connect_timeout_s`` on every API request that may reach a phone over the air: how long
its GP SERAM session waits for the phone's Local Agent to join (``mcred ... --over-the-air
--connect-timeout N`` on the command line), named in the answer's ``wait_s``; refused
without ``over_the_air``, which opens no session."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from test_api_flows import _wait
from test_provision_e2e import HOLDER

from issuer.api.auth import create_token
from mcred.context import Context
from mcred.service import create_app

JOB = "0" * 32
#: each route that may open a session, with a body valid but for the timeout
ROUTES = {
    "/provisioning": {"phone_id": "far-away", "holder": HOLDER, "pin": "1234", "password": "ABC123",
                      "puk": "12345678"},
    "/mdoc-refreshes": {"phone_id": "far-away"},
    "/pin-resets": {"phone_id": "far-away", "slots": ["auth"], "pin": "1234"},
    "/sign-issuances": {"phone_id": "far-away", "password": "ABC123"},
    "/certificate-renewals": {"phone_id": "far-away"},
    "/kloc-moves": {"phone_id": "far-away"},
    "/mdoc-reissues": {"signer": "mdoc-ds-1"},
    f"/tsm-jobs/{JOB}/resume": {},
    f"/tsm-jobs/{JOB}/abandon": {"reason": "the holder withdrew"},
    f"/handovers/{JOB}/run": {},
}


@pytest.fixture
def service(home):
    ctx = Context.open(home)
    app = create_app(ctx, job_workers=1)
    tokens = {"Authorization": f"Bearer {create_token(ctx.sessions, ['issuer', 'operator', 'tsm'])[1]}"}
    with TestClient(app) as client:
        yield client, tokens
    app.state.jobs.shutdown()


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_a_connect_timeout_without_over_the_air_is_refused_naming_it(service, route):
    client, tokens = service
    r = client.post(route, json={**ROUTES[route], "connect_timeout_s": 30}, headers=tokens)
    assert r.status_code == 422, r.text
    assert "connect_timeout_s goes with over_the_air" in r.text


@pytest.mark.parametrize("wait", [0, 0.5, 3601, "soon"])
def test_a_connect_timeout_out_of_its_range_is_refused(service, wait):
    client, tokens = service
    r = client.post("/mdoc-refreshes", json={"phone_id": "far-away", "over_the_air": True,
                                             "connect_timeout_s": wait}, headers=tokens)
    assert r.status_code == 422 and "connect_timeout_s" in r.text, r.text


def test_a_provisioning_over_the_air_waits_for_its_phone_as_long_as_asked(service):
    """The session waits ``connect_timeout_s``, not the service's 300 s: a phone that never
    comes is given up then, nothing having reached an SE, and the job says so."""
    client, tokens = service
    body = {**ROUTES["/provisioning"], "over_the_air": True, "connect_timeout_s": 1}
    r = client.post("/provisioning", json=body, headers=tokens)
    assert r.status_code == 202, r.text
    assert r.json()["seram"]["wait_s"] == 1.0
    job = _wait(client, tokens, r.json()["id"], limit_s=60)
    assert job["state"] == "failed", job
    detail = job["error"]["detail"]
    assert job["error"]["type"] == "TransportError", job["error"]
    assert "did not poll SERAM session" in detail and "within 1 s" in detail, detail
