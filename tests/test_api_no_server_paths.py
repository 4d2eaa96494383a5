"""No answer of ``mcred serve`` names a file of the server (specs/api.md, "Errors"): a
phone whose SE image or record cannot be read was a 409 whose detail carried the server's
path of ``se.cbor`` / ``phone.cbor``, a job that failed on it kept the path in its error,
and the public ``/readyz`` named where the TSM master key and the reader's session key
live. The data directory is written ``<home>``: the phone and the file are still named."""

from __future__ import annotations

import time
from pathlib import Path

from fastapi.testclient import TestClient

import wallet_sim
from issuer.api import problems
from issuer.api.auth import create_token
from mcred.context import Context
from mcred.service import create_app


def _no_path(text: str, home: Path) -> None:
    for p in {str(home), str(home.resolve())}:
        assert p not in text, text


def test_problems_jobs_and_probes_never_name_the_data_directory(home: Path):
    ctx = Context.open(home)
    token = create_token(ctx.sessions, ["operator"], "paths")[1]
    phone = wallet_sim.create_phone(home)
    app = create_app(ctx, job_workers=1)
    with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as c:
        r = c.get("/readyz")
        assert r.status_code == 200
        _no_path(r.text, home)
        assert r.json()["checks"]["tsm-master-key"]["detail"].startswith("<home>/tsm/master.key")

        (home / "phones" / phone / "se.cbor").write_bytes(b"garbage")
        r = c.get(f"/phones/{phone}")
        assert r.status_code == 409 and r.json()["type"] == "/problems/se-state"
        _no_path(r.text, home)
        assert f"<home>/phones/{phone}/se.cbor" in r.json()["detail"]

        r = c.post("/mdoc-refreshes", json={"phone_id": phone})  # the job meets the same image
        assert r.status_code == 202
        for _ in range(200):
            job = c.get(r.headers["location"]).json()
            if job["state"] not in ("queued", "running"):
                break
            time.sleep(0.05)
        assert job["state"] == "failed" and job["error"]["type"] == "SeStateError", job
        assert job["error"]["problem"] == "/problems/se-state"  # as GET /phones/{id} answered it
        _no_path(str(job), home)
        assert f"<home>/phones/{phone}/se.cbor" in job["error"]["detail"]

        (home / "phones" / phone / "phone.cbor").write_bytes(b"")
        r = c.get(f"/phones/{phone}")
        assert r.status_code == 409 and r.json()["type"] == "/problems/phone-state"
        _no_path(r.text, home)
        assert f"<home>/phones/{phone}/phone.cbor" in r.json()["detail"]
    app.state.jobs.shutdown()


def test_redact_replaces_whole_path_components_only(tmp_path: Path):
    base = tmp_path / "srv"
    problems.hide_path(base, "<home>")
    assert problems.redact(f"cannot read {base}/phones/p/se.cbor: x") == "cannot read <home>/phones/p/se.cbor: x"
    assert problems.redact(f"'{base}'") == "'<home>'"
    assert problems.redact(f"{base}2/other") == f"{base}2/other"  # another directory, left alone
    assert problems.redact("POST /tsm-jobs/1/resume") == "POST /tsm-jobs/1/resume"
