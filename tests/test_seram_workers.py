"""Over the air under `mcred serve --workers 2`, as deployed: the service in a subprocess,
a provisioning with `over_the_air` through its API, and the phone's Local Agent polling
with a new connection for every request, so that its polls land on either worker; the
worker that does not hold the session relays them (tsm.seram_relay)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
from test_present_http import answer_when_up, free_port
from test_provision_e2e import HOLDER

from issuer.api.auth import create_token
from mcred.context import Context
from mcred.ota import PhoneAgentThread


def _scrape(url: str, operator: str) -> dict[str, float]:
    scraped = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {operator}"}, timeout=10).text
    return {side: sum(float(line.rsplit(" ", 1)[1]) for line in scraped.splitlines()
                      if line.startswith(f'mcred_seram_relayed_total{{side="{side}"}}'))
            for side in ("forwarded", "answered")}


def _provision_over_the_air(url: str, headers: dict, pid: str, home: Path) -> None:
    r = httpx.post(f"{url}/provisioning", headers=headers, timeout=30, json={
        "phone_id": pid, "holder": dict(HOLDER, given_name=pid[-6:]), "key_type": "p384", "mdoc_batch": 1,
        "pin": "1234", "password": "ABC123", "puk": "12345678", "over_the_air": True})
    assert r.status_code == 202, r.text
    # no connection kept: every poll is a new connection, which either worker accepts
    client = httpx.Client(limits=httpx.Limits(max_keepalive_connections=0), timeout=60)
    agent = PhoneAgentThread(r.json()["seram"]["endpoint"], pid, home, client=client)
    agent.start_session(r.json()["seram"]["session"])
    result = agent.join(120)
    assert result.notifications == ["provision/done/OK"], result
    job_id = r.json()["id"]
    for _ in range(200):
        job = httpx.get(f"{url}/jobs/{job_id}", headers=headers, timeout=10).json()
        if job["state"] not in ("queued", "running"):
            break
        time.sleep(0.05)
    assert job["state"] == "succeeded", job
    assert job["result"]["mdocs"] == 1


def test_a_phone_is_provisioned_over_the_air_whichever_worker_its_polls_reach(home: Path):
    ctx = Context.open(home)
    phones = [ctx.new_phone() for _ in range(3)]
    _, token = create_token(ctx.sessions, ["issuer"], "workers")
    _, operator = create_token(ctx.sessions, ["operator"], "scrapes")
    ctx.engine.dispose()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "mcred", "serve", "--workers", "2", "--port", str(port)],
                            env=dict(os.environ, MCRED_HOME=str(home), MCRED_JOB_WORKERS="2",
                                     MCRED_PUBLIC_URL=url),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    headers = {"Authorization": f"Bearer {token}"}
    try:
        answer_when_up(proc, lambda: httpx.get(f"{url}/readyz", timeout=5), "mcred serve")
        # until some polls reached the worker that does not hold the session (with a new
        # connection a poll, about half of some 24 do; the operating system decides), each
        # relayed there and answered by the other (a scrape sums both workers' counts)
        for pid in phones:
            _provision_over_the_air(url, headers, pid, home)
            counts = _scrape(url, operator)
            assert counts["forwarded"] == counts["answered"], counts
            if counts["forwarded"]:
                break
        assert counts["forwarded"] > 0, f"the operating system sent all {len(phones)} phones' polls to one worker"
    finally:
        proc.terminate()
        proc.wait(15)
