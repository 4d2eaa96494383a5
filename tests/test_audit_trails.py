"""The audit trails read back: ``mcred audit`` (the issuer's: who issued, revoked, held what,
why) and ``mcred tsm audit`` (the TSM's: sessions, every command's header, length and status
word, job events), on the CLI and over the API (scope operator), with their filters. Neither
carries a secret: the holder's password never appears."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from documented import check_every_answer
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import wallet_sim
from issuer.api.auth import create_token
from issuer.revocation import revoke
from mcred.cli.main import app
from mcred.context import Context
from mcred.provision import parse_holder, provision
from mcred.service import create_app

HOLDER = {"family_name": "監査", "given_name": "記録", "family_name_kana": "カンサ",
          "given_name_kana": "キロク", "birth_date": "1970-01-02", "sex": 1,
          "address": "福岡県福岡市中央区1-1", "prefecture": "福岡県", "municipality": "福岡市"}
PASSWORD = "ZQXW9876AUDIT"


@pytest.fixture
def provisioned(home: Path, monkeypatch):
    monkeypatch.setattr(os, "fsync", lambda fd: None)
    ctx = Context.open(home)
    pid = wallet_sim.create_phone(home)
    result = provision(ctx, pid, parse_holder(HOLDER), key_type="p384", mdoc_batch=1, pin="2580", password=PASSWORD)
    revoke(ctx.sessions, pid, "cessationOfOperation", actor="test-operator")
    return ctx, pid, result


def _cli(*args: str):
    r = CliRunner().invoke(app, list(args))
    assert r.exit_code == 0, r.output
    return r.stdout


def test_the_issuer_audit_names_acts_and_reasons_newest_first(provisioned):
    ctx, pid, _ = provisioned
    rows = json.loads(_cli("audit", "--json"))
    assert rows == sorted(rows, key=lambda r: r["id"], reverse=True)
    revoked = json.loads(_cli("audit", "--action", "credential", "--json"))
    assert revoked and all(r["action"].startswith("credential.") for r in revoked)
    assert {r["detail"]["reason"] for r in revoked} == {"cessationOfOperation"}
    assert {r["actor"] for r in revoked} == {"test-operator"}
    one = revoked[0]["subject"]
    assert [r["subject"] for r in json.loads(_cli("audit", "--subject", one, "--json"))] == [one] * len(
        [r for r in rows if r["subject"] == one])
    assert len(json.loads(_cli("audit", "--limit", "2", "--json"))) == 2
    # "cred" is no family of "credential": only whole dotted parts match
    assert json.loads(_cli("audit", "--action", "cred", "--json")) == []
    text = _cli("audit", "--action", "credential.revoke")
    assert "test-operator  credential.revoke" in text and "cessationOfOperation" in text
    assert "no audit event about nobody" in _cli("audit", "--subject", "nobody")
    # a phone's trail holds its credentials' revocations and issuances (a README walk-through
    # asked for the phone's and found none: they are recorded on each credential), a holder's
    # their phones' too
    on_phone = json.loads(_cli("audit", "--subject", pid, "--action", "credential", "--json"))
    assert len(on_phone) == 3 and all(r["detail"]["phone"] == pid for r in on_phone)
    assert {r["action"] for r in json.loads(_cli("audit", "--subject", pid, "--json"))} >= {
        "credential.revoke", "jpki.issue", "mdoc.issue"}
    holder = provisioned[2].holder_id
    assert {r["action"] for r in json.loads(_cli("audit", "--subject", holder, "--json"))} >= {
        "holder.register", "phone.attach", "credential.revoke", "jpki.issue"}


def test_the_tsm_audit_shows_a_phones_commands_and_jobs_never_data(provisioned):
    ctx, pid, result = provisioned
    rows = json.loads(_cli("tsm", "audit", "--phone", pid, "--limit", "100000", "--json"))
    assert rows == sorted(rows, key=lambda r: r["id"])
    events = {r["event"] for r in rows}
    assert {"session-open", "apdu", "job-created", "job-done"} <= events
    assert {r["phone_id"] for r in rows} == {pid}  # the API's name for it, as GET /tsm-jobs says it
    jobs = json.loads(_cli("tsm", "jobs", "--phone", pid, "--json"))
    assert jobs and all(j["phone_id"] == j["phone"] == pid for j in jobs)
    # each job's age: when it was made and last moved, in UTC, as the audit says
    audited = {r["job"]: r["at"] for r in rows if r["event"] == "job-created"}
    for j in jobs:
        made, moved = dt.datetime.fromisoformat(j["created_at"]), dt.datetime.fromisoformat(j["updated_at"])
        assert made.utcoffset() == moved.utcoffset() == dt.timedelta(0) and made <= moved, j
        assert abs(made - dt.datetime.fromisoformat(audited[j["id"]])) < dt.timedelta(seconds=5), (j, audited)
    assert f"  since {jobs[-1]['updated_at'][:19]}Z" in _cli("tsm", "jobs", "--phone", pid)
    apdus = [r for r in rows if r["event"] == "apdu"]
    assert all(len(r["command"]) == 8 and r["sw"] for r in apdus)
    assert any(r["command"].startswith("80E6") for r in apdus)  # INSTALL
    assert PASSWORD not in json.dumps(rows) and PASSWORD.encode().hex().upper() not in json.dumps(rows).upper()
    job = next(r["job"] for r in rows if r["event"] == "job-done")
    only_job = json.loads(_cli("tsm", "audit", "--job", job, "--limit", "100000", "--json"))
    assert only_job and {r["job"] for r in only_job} == {job}
    last = json.loads(_cli("tsm", "audit", "--phone", pid, "--limit", "3", "--json"))
    assert last == rows[-3:]
    assert {r["event"] for r in json.loads(_cli("tsm", "audit", "--event", "job-done", "--json"))} == {"job-done"}
    text = _cli("tsm", "audit", "--phone", pid, "--limit", "50")
    assert f"  {pid}  {job}" in text and "-> 9000" in text
    assert "no audit record for phone ph-none" in _cli("tsm", "audit", "--phone", "ph-none")


def test_both_trails_over_the_api_for_operators_only(provisioned):
    ctx, pid, _ = provisioned
    app = create_app(ctx, job_workers=1)
    client = TestClient(app)
    checked = check_every_answer(client, app)
    operator = {"Authorization": f"Bearer {create_token(ctx.sessions, ['operator'])[1]}"}
    issuer = {"Authorization": f"Bearer {create_token(ctx.sessions, ['issuer'])[1]}"}
    r = client.get("/audit", params={"action": "credential.revoke"}, headers=operator)
    assert r.status_code == 200 and r.json()["events"]
    assert {e["action"] for e in r.json()["events"]} == {"credential.revoke"}
    r = client.get("/tsm-audit", params={"phone_id": pid, "event": "job-done"}, headers=operator)
    assert r.status_code == 200 and {x["event"] for x in r.json()["records"]} == {"job-done"}
    assert client.get("/tsm-audit", params={"phone_id": pid}, headers=operator).json()["records"]
    assert {"GET /audit 200", "GET /tsm-audit 200"} <= set(checked)  # both trails as documented
    assert client.get("/tsm-audit", headers=issuer).status_code == 403
    assert client.get("/tsm-audit").status_code == 401
    bad = client.get("/tsm-audit", params={"job_id": "not-a-job"}, headers=operator)
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")


def test_a_command_is_recorded_as_its_operator(home, monkeypatch, tmp_path):
    """Who revoked a holder's certificates? A command names its operator in both trails:
    ``cli:<name>``, from MCRED_ACTOR (a staff id on a shared account) or else the login name
    (a README walk-through found only "operator", "mcred" or "cli" there); ``--actor`` finds
    one operator's acts, ``cli`` all the commands'."""
    import getpass

    monkeypatch.setattr(os, "fsync", lambda fd: None)
    pid = wallet_sim.create_phone(home)
    holder = tmp_path / "holder.json"
    holder.write_text(json.dumps({**HOLDER, "pin": "2580", "password": PASSWORD, "puk": "12345678"}))
    monkeypatch.setenv("MCRED_ACTOR", "tanaka-0042")
    _cli("provision", "--phone", pid, "--holder", str(holder), "--key-type", "p384", "--mdoc-batch", "1")
    _cli("revoke", "--phone", pid, "--reason", "certificateHold")
    monkeypatch.delenv("MCRED_ACTOR")
    _cli("release", "--phone", pid)
    me = f"cli:{getpass.getuser()}"
    rows = json.loads(_cli("audit", "--json"))
    by = {r["action"]: r["actor"] for r in reversed(rows)}  # the latest of each action
    assert by["holder.register"] == by["phone.attach"] == by["credential.hold"] == "cli:tanaka-0042"
    assert by["credential.release"] == me
    mine = json.loads(_cli("audit", "--actor", "cli:tanaka-0042", "--json"))
    assert mine and {r["actor"] for r in mine} == {"cli:tanaka-0042"}
    assert {r["actor"] for r in json.loads(_cli("audit", "--actor", "cli", "--json"))} == {"cli:tanaka-0042", me}
    assert json.loads(_cli("audit", "--actor", "cli:tanaka", "--json")) == []  # whole names only
    assert "no audit event by token" in _cli("audit", "--actor", "token")
    tsm = json.loads(_cli("tsm", "audit", "--phone", pid, "--event", "job-created", "--json"))
    assert [r["actor"] for r in tsm] == ["cli:tanaka-0042"]
    from mcred.context import ConfigError

    for bad in ("", " ", "x" * 65, "tab\there"):
        monkeypatch.setenv("MCRED_ACTOR", bad)
        r = CliRunner().invoke(app, ["revoke", "--phone", pid, "--reason", "certificateHold"])
        assert isinstance(r.exception, ConfigError) and "MCRED_ACTOR" in str(r.exception), r.output
    done = subprocess.run([sys.executable, "-m", "mcred", "revoke", "--phone", pid, "--reason", "certificateHold"],
                          capture_output=True, text=True, env=dict(os.environ, MCRED_ACTOR=""), timeout=120)
    assert done.returncode == 2 and done.stderr.startswith("error: MCRED_ACTOR=''"), done.stderr
    assert json.loads(_cli("audit", "--action", "credential.hold", "--limit", "100", "--json"))[0]["actor"] \
        == "cli:tanaka-0042"  # nothing held by the refused ones


def test_the_api_audit_filters_by_actor(provisioned):
    ctx, pid, result = provisioned
    client = TestClient(create_app(ctx, job_workers=1))
    token_id, secret = create_token(ctx.sessions, ["operator"], "auditor")
    operator = {"Authorization": f"Bearer {secret}"}
    r = client.post(f"/holders/{result.holder_id}/forget", json={"reason": "records kept long enough"},
                    headers=operator)
    assert r.status_code == 200, r.text
    r = client.get("/audit", params={"actor": f"token:{token_id}"}, headers=operator)
    assert r.status_code == 200 and [e["action"] for e in r.json()["events"]] == ["holder.forget"]
    assert r.json()["events"][0]["actor"] == f"token:{token_id}:auditor"
    r = client.get("/audit", params={"actor": "test-operator"}, headers=operator)
    assert r.status_code == 200 and {e["actor"] for e in r.json()["events"]} == {"test-operator"}
    assert client.get("/audit", params={"actor": "x" * 129}, headers=operator).status_code == 422


#: Action or actor names and families drawn from characters around the separators ('-' <
#: '.' < '/', '9' < ':' < ';'), LIKE's wildcards and escape, upper case (SQLite's LIKE
#: ignores it) and beyond ASCII
_CHARS = "aAbz.-/:;9_%\\é日"


def _like(column, value: str, sep: str):  # noqa: ANN001, ANN202 - what the filter was: a LIKE prefix
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return (column == value) | column.like(escaped + sep + "%", escape="\\")


@pytest.mark.parametrize("max_legs", [64, 1])
@pytest.mark.parametrize("which", ["action", "actor"])
def test_a_family_of_actions_or_actors_is_what_it_was_as_a_like_prefix(engine, monkeypatch, which: str,
                                                                        max_legs: int):
    """``events(action=P)`` (``actor=A``) reads P's family off a range of an index (on SQLite
    each value's newest events, merged): the events whose action is P or starts with ``P.``
    (whose actor is A or starts with ``A:``), newest first, paged, as the LIKE prefix gave
    them (on PostgreSQL, compared with the LIKE itself; SQLite's LIKE ignored case, so that
    ``Credential`` gave ``credential.revoke`` there only). ``max_legs`` 1: on SQLite too,
    one range; the other filter, drawn or not, a condition beside it."""
    import datetime as dt

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from sqlalchemy import delete, select
    from sqlalchemy.orm import sessionmaker

    import issuer.audit
    from issuer.audit import events
    from issuer.db import AuditEvent

    monkeypatch.setattr(issuer.audit, "MAX_LEGS", max_legs)
    sessions = sessionmaker(engine)
    sep, other, other_sep = (".", "actor", ":") if which == "action" else (":", "action", ".")
    names = st.text(_CHARS, min_size=1, max_size=6)
    at = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)

    def member(value: str, family: str, sep: str) -> bool:
        return value == family or value.startswith(family + sep)

    @settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(names, min_size=1, max_size=8), st.lists(st.integers(0, 7), max_size=40), names,
           st.one_of(st.none(), st.sampled_from(["x", "y"])), st.integers(1, 12), st.integers(0, 8))
    def check(vocabulary: list[str], picks: list[int], prefix: str, also: str | None, limit: int,
              offset: int) -> None:
        # the family's own names and their neighbours, beside the drawn ones
        vocabulary = [*vocabulary, prefix, prefix + sep + "x", prefix + "-x", prefix + chr(ord(sep) + 1),
                      prefix.upper() + sep + "x"]
        values = [vocabulary[i % len(vocabulary)] for i in picks] + vocabulary
        with sessions.begin() as s:
            s.execute(delete(AuditEvent))
            s.add_all(AuditEvent(at=at, subject=f"s{n}", detail={},
                                 **{which: v, other: ["x", "x" + other_sep + "1", "y"][n % 3]})
                      for n, v in enumerate(values))
        family = prefix.rstrip(sep)
        with sessions() as s:
            rows = s.execute(select(AuditEvent.id, getattr(AuditEvent, which), getattr(AuditEvent, other))
                             .order_by(AuditEvent.id.desc())).all()
            newest = [i for i, v, o in rows
                      if member(v, family, sep) and (also is None or member(o, also, other_sep))]
            if engine.dialect.name == "postgresql":  # LIKE compares as Python does there
                like = s.scalars(select(AuditEvent.id).where(_like(getattr(AuditEvent, which), family, sep))
                                 .order_by(AuditEvent.id.desc())).all()
                assert like == [i for i, v, _ in rows if member(v, family, sep)]
        asked = {which: prefix, **({other: also} if also is not None else {})}
        assert [e["id"] for e in events(sessions, **asked, limit=limit, offset=offset)] == \
            newest[offset:offset + limit]
        assert [e["id"] for e in events(sessions, **asked, limit=1000)] == newest

    check()
