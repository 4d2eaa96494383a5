"""What tests that drive the HTTP API in-process (fastapi.testclient) share: bearer headers
per scope, waiting for a job to end, and a phone provisioned through POST /provisioning."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from fastapi.testclient import TestClient

from issuer.api.auth import create_token


def bearer(sessions, scopes: Iterable[str]) -> dict[str, dict[str, str]]:  # noqa: ANN001 - a sessionmaker
    """An ``Authorization`` header per scope, each of a token of that scope alone."""
    return {s: {"Authorization": f"Bearer {create_token(sessions, [s])[1]}"} for s in scopes}


def wait_job(c: TestClient, headers: dict, job_id: str, limit_s: float = 30) -> dict[str, Any]:
    """The job once it has ended (polled every 50 ms), else an AssertionError after ``limit_s``."""
    end = time.monotonic() + limit_s
    while True:
        j = c.get(f"/jobs/{job_id}", headers=headers).json()
        if j["state"] not in ("queued", "running"):
            return j
        if time.monotonic() > end:
            raise AssertionError(f"job {job_id} still {j['state']} after {limit_s} s")
        time.sleep(0.05)


def provision_over_api(c: TestClient, tok: dict[str, dict], holder: dict, *, model: str = "kc",
                       limit_s: float = 60, **body: Any) -> str:
    """A new phone (tsm scope) provisioned for ``holder`` (issuer scope: P-384, one mdoc,
    PIN 4321 unless ``body`` says otherwise), its job succeeded: the phone's id."""
    phone = c.post("/phones", headers=tok["tsm"], json={"model": model}).json()["id"]
    r = c.post("/provisioning", headers=tok["issuer"], json={
        "phone_id": phone, "holder": holder, "key_type": "p384", "mdoc_batch": 1,
        "pin": "4321", "password": "KEYS42", "puk": "87654321", **body})
    assert r.status_code == 202, r.text
    job = wait_job(c, tok["issuer"], r.json()["id"], limit_s)
    assert job["state"] == "succeeded", job
    return phone
