"""``GET /metrics`` (mcred/metrics.py): Prometheus text format behind an operator token;
request counts by route template (never the raw path), and the registry's gauges read from
the database at scrape time, so they follow provisioning and revocation."""

from __future__ import annotations

import os

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from issuer.api.auth import create_token
from mcred.context import Context
from mcred.provision import parse_holder, provision
from mcred.service import create_app

HOLDER = {"family_name": "計測", "given_name": "花子", "family_name_kana": "ケイソク",
          "given_name_kana": "ハナコ", "birth_date": "1991-01-02", "sex": 2,
          "address": "東京都港区1-1", "prefecture": "東京都", "municipality": "港区"}


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_follow_the_registry_and_count_requests_by_route(home, monkeypatch):
    import wallet_sim
    from issuer.revocation import revoke

    monkeypatch.setattr(os, "fsync", lambda fd: None)
    ctx = Context.open(home)
    app = create_app(ctx, job_workers=1)
    op = {"Authorization": "Bearer " + create_token(ctx.sessions, ["operator"], "prom")[1]}
    issuer = {"Authorization": "Bearer " + create_token(ctx.sessions, ["issuer"], "iss")[1]}
    with TestClient(app) as c:
        assert c.get("/metrics").status_code == 401
        assert c.get("/metrics", headers=issuer).status_code == 403
        phone = wallet_sim.create_phone(home)
        provision(ctx, phone, parse_holder(HOLDER), key_type="p384", mdoc_batch=2)
        for _ in range(3):
            assert c.get(f"/jobs/{'0' * 31}f", headers=issuer).status_code == 404
        r = c.get("/metrics", headers=op)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        m = _samples(r.text)
        assert m[("mcred_registry_up", ())] == 1
        assert m[("mcred_credentials", (("kind", "mdoc"), ("status", "valid")))] == 2
        assert m[("mcred_credentials", (("kind", "jpki-sign"), ("status", "valid")))] == 1
        assert m[("mcred_phones", (("state", "active"),))] == 1
        assert m[("mcred_tsm_jobs", (("kind", "provision"), ("state", "done")))] == 1
        assert m[("mcred_status_list_indices_allocated", ())] == 2
        assert m[("mcred_issuer_keys", (("purpose", "ds"), ("state", "active")))] == 1
        # requests by route template: three 404s on one series, no raw job id anywhere
        key = ("mcred_http_requests_total", (("method", "GET"), ("route", "/jobs/{job_id}"), ("status", "404")))
        assert m[key] == 3 and "0" * 31 + "f" not in r.text

        revoke(ctx.sessions, phone, "keyCompromise", "mdoc")
        m = _samples(c.get("/metrics", headers=op).text)
        assert m[("mcred_credentials", (("kind", "mdoc"), ("status", "revoked")))] == 2
        assert ("mcred_credentials", (("kind", "mdoc"), ("status", "valid"))) not in m
    app.state.jobs.shutdown()


def test_a_registry_that_cannot_be_read_is_reported_not_raised(home):
    from mcred.metrics import Metrics

    down = Context.open(home, database="postgresql+psycopg://postgres@127.0.0.1:1/test")
    m = _samples(Metrics(down).exposition().decode())
    assert m[("mcred_registry_up", ())] == 0
