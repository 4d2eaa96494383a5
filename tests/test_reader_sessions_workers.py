"""The issuer service as deployed: ``uvicorn --factory mcred.service:app_from_env --workers
2`` (or ``mcred serve --workers 2``, which runs the same) in a subprocess on 127.0.0.1, and
presentations whose three requests (open, SessionData, result) each come on a new
connection, so each may reach either worker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from test_present_http import answer_when_up, free_port
from test_reader_sessions_shared import _wallet_reply

from issuer.api.auth import create_token
from mcred.context import Context
from protocols.mdoc import SessionData
from wallet_sim.engagement import Engagement

PRESENTATIONS = 24


LAUNCH = {
    "uvicorn": [sys.executable, "-m", "uvicorn", "--factory", "mcred.service:app_from_env",
                "--host", "127.0.0.1", "--workers", "2", "--log-level", "warning", "--no-access-log", "--port"],
    "mcred serve": [sys.executable, "-m", "mcred", "serve", "--workers", "2", "--port"],
}


@pytest.fixture(params=list(LAUNCH))
def service(request, home: Path, monkeypatch):
    """The service in a subprocess; every answer the test gets from it held to the OpenAPI
    document of the app it runs (built alike here), the mounted reader's included."""
    from documented import check_every_served_answer

    from mcred.service import create_app

    ctx = Context.open(home)
    _, token = create_token(ctx.sessions, ["reader"], "workers")
    _, operator = create_token(ctx.sessions, ["operator"], "scrapes")
    document = create_app(ctx, job_workers=1).openapi()
    ctx.engine.dispose()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    check_every_served_answer(monkeypatch, {url: _Documented(document)})
    proc = subprocess.Popen(
        [*LAUNCH[request.param], str(port)],
        env=dict(os.environ, MCRED_HOME=str(home), MCRED_JOB_WORKERS="1"),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        # the IACA is made by the first request that needs it: here, before the test
        answer_when_up(proc, lambda: httpx.get(f"{url}/trust/iaca.pem", timeout=5), "uvicorn")
        yield url, {"Authorization": f"Bearer {token}"}, request.param, {"Authorization": f"Bearer {operator}"}
    finally:
        proc.terminate()
        proc.wait(15)


class _Documented:
    """An app's OpenAPI document where tests/documented.py takes the app."""

    def __init__(self, document: dict) -> None:
        self.document = document

    def openapi(self) -> dict:
        return self.document


def _on_a_new_connection(url: str, headers: dict, method: str, path: str, body: bytes | None = None):
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        return client.request(method, path, content=body)


def test_presentations_whose_requests_each_open_a_new_connection(service):
    url, headers, launch, operator = service
    answers = []
    for _ in range(PRESENTATIONS):
        engagement = Engagement.new()
        r = _on_a_new_connection(url, headers, "POST", "/reader/sessions", engagement.uri.encode())
        assert r.status_code == 201
        sid = r.headers["x-session-id"]
        reply = _wallet_reply(engagement, r.content, b"\xa0")
        r = _on_a_new_connection(url, headers, "POST", f"/reader/sessions/{sid}", reply)
        answers.append(r.status_code)
        if r.status_code != 200:
            continue
        assert SessionData.decode(r.content).status == 20
        r = _on_a_new_connection(url, headers, "GET", f"/reader/sessions/{sid}/result")
        answers.append(r.status_code)
        if r.status_code == 200:
            assert r.json()["checks"][0]["passed"]  # the wallet's message decrypted
    assert answers == [200] * (2 * PRESENTATIONS)
    if launch == "mcred serve":  # its workers share their counts: any scrape sums them all
        for _ in range(6):
            scraped = _on_a_new_connection(url, operator, "GET", "/metrics").text
            assert (f'mcred_http_requests_total{{method="POST",route="/reader/sessions",status="201"}} '
                    f"{float(PRESENTATIONS)}") in scraped, scraped
