"""The stand-alone reader as a relying party deploys it at scale: ``mcred reader serve --db
URL --workers 2`` (uvicorn workers sharing their sessions through the database), with
presentations whose three requests each come on a new connection, so each may reach
either worker. The database holds the reader's table only."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from test_iaca_profiles import make_iaca
from test_present_http import answer_when_up, free_port
from test_reader_sessions_shared import _wallet_reply
from typer.testing import CliRunner

from mcred.cli.main import app
from protocols.mdoc import SessionData
from wallet_sim.engagement import Engagement

PRESENTATIONS = 16
CROSS_DEVICE = 4


@pytest.fixture
def iaca_pem(tmp_path: Path) -> Path:
    _, cert = make_iaca()
    path = tmp_path / "iaca.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _serve(iaca_pem: Path, db_url: str, port: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mcred", "reader", "serve", "--trust", str(iaca_pem), "--offline",
         "--db", db_url, "--workers", "2", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _on_a_new_connection(url: str, method: str, path: str, body: bytes | None = None) -> httpx.Response:
    with httpx.Client(base_url=url, timeout=30) as client:
        return client.request(method, path, content=body)


def test_two_workers_share_the_sessions_through_the_database(iaca_pem, db_url):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _serve(iaca_pem, db_url, port)
    try:
        ready = answer_when_up(proc, lambda: httpx.get(f"{url}/readyz", timeout=5),  # what a balancer asks
                               "the reader")
        assert set(ready.json()["checks"]) == {"trust", "sessions"}
        answers = []
        for _ in range(PRESENTATIONS):
            engagement = Engagement.new()
            r = _on_a_new_connection(url, "POST", "/sessions", engagement.uri.encode())
            assert r.status_code == 201, r.text
            sid = r.headers["x-session-id"]
            r = _on_a_new_connection(url, "POST", f"/sessions/{sid}",
                                     _wallet_reply(engagement, r.content, b"\xa0"))
            answers.append(r.status_code)
            if r.status_code == 200:
                assert SessionData.decode(r.content).status == 20
            r = _on_a_new_connection(url, "GET", f"/sessions/{sid}/result")
            answers.append(r.status_code)
            if r.status_code == 200:  # decrypted by whichever worker took it; no DeviceResponse
                assert r.json()["checks"][0]["passed"] and not r.json()["valid"]
        assert answers == [200] * (2 * PRESENTATIONS)
        # every scrape, whichever worker answers it, counts every worker's verdicts
        for _ in range(6):
            scraped = _on_a_new_connection(url, "GET", "/metrics").text
            assert f'mcred_reader_verdicts_total{{valid="false"}} {float(PRESENTATIONS)}' in scraped, scraped
            assert (f'mcred_http_requests_total{{method="POST",route="/sessions",status="201"}} '
                    f"{float(PRESENTATIONS)}") in scraped
        # cross-device: opened by one worker, the phone's form taken by whichever, the verdict by
        # whichever (the request's state kept in the database; the public URL the default)
        for _ in range(CROSS_DEVICE):
            r = _on_a_new_connection(url, "POST", "/online/sessions?protocol=openid4vp-cross-device")
            assert r.status_code == 201, r.text
            sid, request = r.json()["session"], r.json()["request"]
            assert request["response_uri"] == f"{url}/oid4vp/responses/{sid}"
            state = parse_qs(urlsplit(request["uri"]).query)["state"][0]
            r = _on_a_new_connection(url, "POST", f"/oid4vp/responses/{sid}",
                                     urlencode({"error": "access_denied", "state": state}).encode())
            assert r.status_code == 200 and r.json() == {}
            r = _on_a_new_connection(url, "GET", f"/sessions/{sid}/result?wait=10")
            assert r.status_code == 200 and "access_denied" in r.json()["checks"][0]["reason"]
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    assert "sessions in" in out.decode() and "2 workers" in out.decode()
    engine = sa.create_engine(db_url)
    try:
        names = set(sa.inspect(engine).get_table_names())
        with engine.connect() as conn:
            done = conn.execute(sa.text("SELECT count(*) FROM reader_sessions WHERE state = 'done' "
                                        "AND e_reader_key IS NULL")).scalar_one()
    finally:
        engine.dispose()
    # the reader's tables (its relying party's watch list and the last VICAL taken included), nobody else's
    assert names == {"reader_sessions", "rp_challenges", "rp_watch", "rp_watch_events", "reader_vicals",
                     "alembic_version"}
    assert done == PRESENTATIONS + CROSS_DEVICE


def test_workers_without_a_database_or_with_a_bad_one_are_refused(iaca_pem):
    runner = CliRunner()
    r = runner.invoke(app, ["reader", "serve", "--trust", str(iaca_pem), "--workers", "2"])
    assert r.exit_code == 2 and "--workers 2 needs --db" in r.output
    r = runner.invoke(app, ["reader", "serve", "--trust", str(iaca_pem), "--session-key-file", "k"])
    assert r.exit_code == 2 and "give --db too" in r.output
    r = runner.invoke(app, ["reader", "serve", "--trust", str(iaca_pem), "--db", "nosuchdb://x:secret@h/d"])
    assert r.exit_code == 2 and "--db" in r.output and "secret" not in r.output
    r = runner.invoke(app, ["reader", "serve", "--trust", str(iaca_pem), "--db", "not a url"])
    assert r.exit_code == 2 and "--db" in r.output and "not a url" not in r.output
