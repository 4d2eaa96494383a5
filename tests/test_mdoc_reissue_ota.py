"""A signer compromised, its phones re-issued over the air (specs/issuer-keys.md,
"Re-issuing after a compromise"; specs/tsm.md "Over the air"): ``mcred mdoc reissue --signer
REF --over-the-air`` refreshes the phones whose SE is in this installation here, and reaches
each other phone through its GP SERAM Local Agent, in a session of its own on the one
endpoint. A phone whose agent never joins is ``unreached`` and stops nothing else; the same
command again, the phone on, finishes it. The same over HTTP (``POST /mdoc-reissues`` with
``over_the_air``, the sessions in the answer's ``seram_sessions``)."""

from __future__ import annotations

import json
import os

import pytest
from conftest import person
from sqlalchemy import select
from test_mdoc_reissue import HOLDERS
from typer.testing import CliRunner

import wallet_sim
from issuer.audit import events
from issuer.db import Credential
from mcred.cli.main import app
from mcred.context import Context
from mcred.drills import Env, _transcript
from mcred.mdoc_flow import mdoc_service
from mcred.ota import PhoneAgentThread, over_the_air, seram_endpoint
from mcred.provision import parse_holder, provision
from protocols import mdoc
from tsm.audit import audit_rows
from tsm.seram import SeramHub
from wallet_sim.se.maker import root_path


@pytest.fixture
def ctx(home, monkeypatch):
    monkeypatch.setattr(os, "fsync", lambda fd: None)
    return Context.open(home)


@pytest.fixture
def field(tmp_path, monkeypatch):
    """A data directory of the phones' own (not the operator's), whose SE maker the TSM is
    told to trust."""
    phone_home = tmp_path / "phone-home"
    phone_home.mkdir()
    wallet_sim.create_phone(phone_home)  # the maker's root, made with its first phone
    monkeypatch.setenv("MCRED_SE_MAKER_ROOTS", str(root_path(phone_home)))
    return phone_home


def _free_listen() -> str:
    from benchmarks.scratch import free_port

    return f"127.0.0.1:{free_port()}"


def _agent(endpoint: str, pid: str, phone_home) -> PhoneAgentThread:  # noqa: ANN001
    return PhoneAgentThread(endpoint, pid, phone_home, retry_for_s=20)


def _installation(ctx, phone_home, away: int, here: int = 1) -> tuple[list[str], list[str]]:
    """``away`` phones provisioned over the air (their SEs in ``phone_home``), sorted as the
    registry names them, and ``here`` phones provisioned in the operator's data directory;
    one person each."""
    n = iter(range(100))
    far = sorted(wallet_sim.create_phone(phone_home) for _ in range(away))
    with seram_endpoint(_free_listen()) as endpoint:
        for pid in far:
            agent = _agent(endpoint.url, pid, phone_home)
            holder = parse_holder(dict(person(HOLDERS[next(n) % 3]), pin="1234", password="ABC123"))
            over_the_air(endpoint.hub, pid, lambda transmit, pid=pid, holder=holder: provision(
                ctx, pid, holder, key_type="p384", mdoc_batch=1, transmit=transmit), on_session=agent.start)
            agent.join()
    near = []
    for _ in range(here):
        pid = wallet_sim.create_phone(ctx.home)
        provision(ctx, pid, parse_holder(person(HOLDERS[next(n) % 3])), key_type="p384", mdoc_batch=1)
        near.append(pid)
    assert not set(far) & set(wallet_sim.list_phones(ctx.home))
    return far, near


def _present(pid: str, phone_home) -> tuple[bytes, mdoc.SessionTranscript]:  # noqa: ANN001
    """The phone's wallet answers a reader (as :meth:`mcred.drills.Env.present`, for a phone
    in its own data directory)."""
    from wallet_sim.wallet import SeMdocApplet, SeSigner

    applet = SeMdocApplet(wallet_sim.open_secure_element(pid, phone_home).transmit)
    slot, n = next((slot, n) for slot, has, n in applet.slots() if has)
    st = _transcript()
    doc = mdoc.build_document(mdoc.IssuerSigned.decode(applet.read(slot, n)), st, signer=SeSigner(applet, slot))
    return mdoc.DeviceResponse((doc,)).encode(), st


def _signers(ctx, pid: str) -> set[str]:
    with ctx.sessions() as s:
        return set(s.scalars(select(Credential.issuer_key).where(
            Credential.phone_id == pid, Credential.kind == "mdoc", Credential.status == "valid")))


def _cli(*args: str):  # noqa: ANN202 - click's Result
    return CliRunner().invoke(app, list(args))


def _flat(out: str) -> str:
    return " ".join(out.split())


def _lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def _job_events(ctx, pid: str, job: str) -> list[tuple[str, str]]:
    return [(r.event, r.actor) for r in audit_rows(ctx.engine, pid) if r.job_id == job and r.event.startswith("job-")]


def test_an_iaca_revoked_and_its_phones_in_the_field_and_here_reissued_over_the_air(ctx, field, monkeypatch):
    """Two phones in their holders' hands and one in the operator's data directory: each
    phone in the field gets a session (one JSON line each, ``--session-id S``: S, S-2), its
    agent takes the refresh, the phone here is refreshed here; all three hold new MSOs of the
    new IACA's document signer, which a reader that took the new bundle accepts."""
    monkeypatch.setenv("MCRED_ACTOR", "kaori")
    far, near = _installation(ctx, field, away=2)
    before = {pid: _present(pid, field) for pid in far}
    r = _cli("mdoc", "iaca", "revoke", "1", "--reason", "cACompromise", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["affected_phones"] == sorted(far + near), r.output

    listen = _free_listen()
    agents = [_agent(f"http://{listen}/gp/seram", pid, field) for pid in far]
    for agent, sid in zip(agents, ("bulk-ota-1", "bulk-ota-1-2"), strict=True):
        agent.start_session(sid)  # started before the command: the sessions are open before it answers
    r = _cli("mdoc", "reissue", "--signer", "mdoc-iaca-1", "--over-the-air", "--listen", listen,
             "--session-id", "bulk-ota-1", "--workers", "3", "--json")
    assert r.exit_code == 0, r.output
    for agent in agents:
        assert agent.join().notifications == ["reissue/done/OK"]
    *announced, report = _lines(r.stdout)
    assert [a["seram"]["phone"] for a in announced] == far
    assert [a["seram"]["session"] for a in announced] == ["bulk-ota-1", "bulk-ota-1-2"]
    assert all(a["seram"]["endpoint"] == f"http://{listen}/gp/seram" and a["seram"]["agent"].startswith(
        f"mcred phone agent {a['seram']['phone']} --remote http://{listen}/gp/seram --session ") for a in announced)
    assert set(report) == {"signer", "purpose", "revoked", "done", "reissued", "refused", "not_here", "on_hold",
                           "unreached", "phones", "seconds"}
    assert (report["signer"], report["purpose"], report["revoked"], report["done"]) == (
        "mdoc-iaca-1", "iaca", "cACompromise", True)
    assert (report["reissued"], report["unreached"], report["not_here"], report["refused"]) == (3, 0, 0, 0)
    phones = {p["phone"]: p for p in report["phones"]}
    assert set(phones) == set(far + near)
    assert all(p["outcome"] == "reissued" and p["mdocs"] == 1 and set(p) == {"phone", "outcome", "job", "mdocs",
                                                                             "detail"} for p in phones.values())

    fresh = Env(ctx)  # a reader that took the bundle after the revocation
    for pid in far + near:
        assert _signers(ctx, pid) == {"mdoc-ds-2"}  # the new IACA's document signer
        said = _present(pid, field if pid in far else ctx.home)
        assert fresh.reader_verdict(*said) == (True, "VALID")
        # each phone's refresh, a TSM job of its own, on record with the operator who ran it
        assert _job_events(ctx, pid, phones[pid]["job"]) == [("job-created", "cli:kaori"), ("job-done", "cli:kaori")]
        issued = [e["detail"] for e in events(ctx.sessions, subject=pid, action="mdoc.issue")
                  if e["detail"]["job"] == phones[pid]["job"]]
        assert [d["ds"] for d in issued] == ["mdoc-ds-2"], issued
    for pid in far:
        ok, why = fresh.reader_verdict(*before[pid])
        assert not ok, why
    r = _cli("mdoc", "reissue", "--signer", "mdoc-iaca-1", "--over-the-air", "--listen", _free_listen())
    assert r.exit_code == 0 and "no phone holds a valid mdoc of mdoc-iaca-1" in _flat(r.stdout), r.output


def test_a_phone_whose_agent_never_comes_is_unreached_and_the_others_go_on(home, db_url, field, monkeypatch):
    """A document signer revoked; without --over-the-air the phones in the field are named
    not-here (how to re-issue them named too). Over the air, of two phones in the field one
    agent never starts: it is unreached once the connect timeout passes, its session ended,
    exit 1, while the other and the phone here are re-issued (on PostgreSQL too, where the
    waiting job holds its SE's row lock). Run again with its agent on, the stopped refresh is
    finished."""
    monkeypatch.setattr(os, "fsync", lambda fd: None)
    monkeypatch.setenv("MCRED_DATABASE_URL", db_url)
    ctx = Context.open(home)
    far, near = _installation(ctx, field, away=2)
    late, on_time = far
    r = _cli("mdoc", "ds", "revoke", "mdoc-ds-1", "--reason", "keyCompromise")
    assert r.exit_code == 0, r.output
    r = _cli("mdoc", "reissue", "--signer", "mdoc-ds-1", "--connect-timeout", "2")
    assert r.exit_code == 2 and "--connect-timeout goes with --over-the-air" in _flat(r.output), r.output

    r = _cli("mdoc", "reissue", "--signer", "mdoc-ds-1", "--json")
    assert r.exit_code == 1, r.output
    plain = {p["phone"]: p for p in json.loads(r.stdout)["phones"]}
    assert plain[near[0]]["outcome"] == "reissued"
    for pid in far:
        assert plain[pid]["outcome"] == "not-here"
        assert "mcred mdoc reissue --signer mdoc-ds-1 --over-the-air" in plain[pid]["detail"]
    assert _signers(ctx, near[0]) == {"mdoc-ds-2"}

    listen = _free_listen()
    agent = _agent(f"http://{listen}/gp/seram", on_time, field)
    agent.start_session("in-field-2")  # the second phone in order: S-2
    r = _cli("mdoc", "reissue", "--signer", "mdoc-ds-1", "--over-the-air", "--listen", listen,
             "--session-id", "in-field", "--connect-timeout", "1.5")
    assert r.exit_code == 1, r.output
    assert agent.join().notifications == ["reissue/done/OK"]
    told = _flat(r.stderr)
    for pid, sid in ((late, "in-field"), (on_time, "in-field-2")):
        assert f"GP SERAM session {sid} for phone {pid}: on the phone, run mcred phone agent {pid} --remote " \
               f"http://{listen}/gp/seram --session {sid}" in told, told
    out = _flat(r.stdout)
    assert f"{on_time}: reissued job" in out
    assert (f"{late}: unreached: its GP SERAM agent did not join session in-field within 1.5 s, so nothing reached "
            f"its SE: run `mcred mdoc reissue --signer mdoc-ds-1 --over-the-air` again once the phone is on") in out
    assert "mdoc-ds-1: 1 phone(s) re-issued, 0 refused, 0 not on this machine, 0 on hold, 1 not reached over the " \
           "air" in out, out
    assert _signers(ctx, on_time) == {"mdoc-ds-2"} and _signers(ctx, late) == {"mdoc-ds-1"}
    (stopped,) = [r_ for r_ in audit_rows(ctx.engine, late) if r_.event == "job-created"][-1:]

    # the late phone on at last: the same command takes it alone, and finishes its stopped refresh
    listen = _free_listen()
    agent = _agent(f"http://{listen}/gp/seram", late, field)
    agent.start_session("field-again")
    r = _cli("mdoc", "reissue", "--signer", "mdoc-ds-1", "--over-the-air", "--listen", listen,
             "--session-id", "field-again", "--json")
    assert r.exit_code == 0, r.output
    assert agent.join().notifications == ["reissue/done/OK"]
    announced, report = _lines(r.stdout)
    assert announced["seram"]["phone"] == late and report["reissued"] == 1 and report["unreached"] == 0
    (p,) = report["phones"]
    assert (p["phone"], p["job"], p["detail"]) == (late, stopped.job_id, "a stopped refresh finished")
    assert _signers(ctx, late) == {"mdoc-ds-2"}
    fresh = Env(ctx)
    assert fresh.reader_verdict(*_present(late, field), ds_crl=True) == (True, "VALID")
    ctx.engine.dispose()


def test_a_session_whose_phone_needs_nothing_any_more_is_ended_all_the_same(ctx, field):
    """Sessions are opened before the run looks again: a phone put on hold meanwhile (its
    refresh would be refused) is told ``reissue/stopped/on-hold`` and let go; the run
    reports it on hold."""
    from issuer.revocation import hold
    from mcred.reissue import phones_away, reissue_signed_by

    far, _ = _installation(ctx, field, away=1, here=0)
    (pid,) = far
    mdoc_service(ctx).rollover_ds()
    assert phones_away(ctx, "mdoc-ds-1") == (pid,)
    hub = SeramHub(connect_timeout_s=5)
    with seram_endpoint(_free_listen(), hub=hub) as endpoint:
        link = hub.open(pid)
        agent = _agent(endpoint.url, pid, field)
        agent.start(link)
        hold(ctx.sessions, pid)
        report = reissue_signed_by(ctx, "mdoc-ds-1", links={pid: link}, stop_wait_s=10)
        assert agent.join().notifications == ["reissue/stopped/on-hold"]
    assert [(p.phone_id, p.outcome) for p in report.phones] == [(pid, "on-hold")] and not report.done


def test_a_phone_whose_se_fails_over_the_air_is_refused_with_the_error_and_stops_no_other(ctx, field):
    """A phone that joins, but whose SE access fails part-way (the agent reports
    UNKNOWN_FAILURE), is refused with the error as a phone here is, its session told
    ``reissue/stopped/...``; the other phone in the field is re-issued."""
    from mcred.reissue import phones_away, reissue_signed_by

    far, _ = _installation(ctx, field, away=2, here=0)
    failing, fine = far
    mdoc_service(ctx).rollover_ds()
    hub = SeramHub(connect_timeout_s=10)
    with seram_endpoint(_free_listen(), hub=hub) as endpoint:
        links = {pid: hub.open(pid) for pid in phones_away(ctx, "mdoc-ds-1")}
        se = wallet_sim.open_secure_element(failing, field)
        count = []

        def broken(capdu: bytes) -> bytes:  # the phone's SE access fails at its 4th C-APDU
            count.append(capdu)
            if len(count) == 4:
                raise OSError("OMAPI: channel not available")
            return se.transmit(capdu)

        agents = {failing: PhoneAgentThread(endpoint.url, failing, field, transmit=broken, retry_for_s=20),
                  fine: _agent(endpoint.url, fine, field)}
        for pid, agent in agents.items():
            agent.start(links[pid])
        report = reissue_signed_by(ctx, "mdoc-ds-1", links=links, workers=2)
        assert agents[fine].join().notifications == ["reissue/done/OK"]
        assert agents[failing].join().notifications == ["reissue/stopped/TransportError"]
    got = {p.phone_id: p for p in report.phones}
    assert got[fine].outcome == "reissued" and _signers(ctx, fine) == {"mdoc-ds-2"}
    assert got[failing].outcome == "refused" and "OMAPI: channel not available" in got[failing].detail, got[failing]
    assert _signers(ctx, failing) == {"mdoc-ds-1"} and not report.done


def test_the_issuer_service_reissues_over_the_air(home, field, monkeypatch):
    """``POST /mdoc-reissues`` with ``over_the_air``: the 202 answer names a session for each
    phone not in the service's data directory (``seram_sessions``); the phone here is
    refreshed here; a phone whose agent never comes is unreached, the job's result says so,
    and the answers are those the OpenAPI document declares."""
    from documented import check_every_served_answer
    from test_api_flows import _wait
    from test_present_http import Server

    from benchmarks.scratch import free_port
    from issuer.api.auth import create_token
    from mcred.service import create_app

    monkeypatch.setattr(os, "fsync", lambda fd: None)
    port = free_port()
    monkeypatch.setenv("MCRED_PUBLIC_URL", f"http://127.0.0.1:{port}")
    ctx = Context.open(home)
    far, near = _installation(ctx, field, away=2)
    late, on_time = far
    operator = {"Authorization": f"Bearer {create_token(ctx.sessions, ['operator'])[1]}"}
    api = create_app(ctx, job_workers=2)
    api.state.seram_hub.connect_timeout_s = 1.5  # a phone that never comes is given up soon
    with Server(api, port) as server, __import__("httpx").Client(base_url=server.url) as c:
        checked = check_every_served_answer(monkeypatch, {server.url: api})
        r = c.post("/trust/ds-revocations", json={"ds": "mdoc-ds-1", "reason": "keyCompromise"}, headers=operator)
        assert r.status_code == 200, r.text
        r = c.post("/mdoc-reissues", json={"signer": "mdoc-ds-1", "over_the_air": True, "workers": 3},
                   headers=operator)
        assert r.status_code == 202, r.text
        sessions = r.json()["seram_sessions"]
        assert [s["phone"] for s in sessions] == far
        assert all(s["endpoint"] == f"{server.url}/gp/seram" and s["wait_s"] == 1.5 for s in sessions)
        agent = _agent(sessions[1]["endpoint"], on_time, field)
        agent.start_session(sessions[1]["session"])
        job = _wait(c, operator, r.json()["id"])
        assert agent.join().notifications == ["reissue/done/OK"]
        assert job["state"] == "succeeded" and job["params"]["over_the_air"], job
        result = job["result"]
        assert (result["reissued"], result["unreached"], result["done"]) == (2, 1, False), result
        outcomes = {p["phone"]: p["outcome"] for p in result["phones"]}
        assert outcomes == {near[0]: "reissued", on_time: "reissued", late: "unreached"}
        # without over_the_air: the phone left is not here, and no session is named
        r = c.post("/mdoc-reissues", json={"signer": "mdoc-ds-1"}, headers=operator)
        assert r.status_code == 202 and "seram_sessions" not in r.json(), r.text
        job = _wait(c, operator, r.json()["id"])
        assert [(p["phone"], p["outcome"]) for p in job["result"]["phones"]] == [(late, "not-here")]
    assert _signers(ctx, on_time) == _signers(ctx, near[0]) == {"mdoc-ds-2"}
    assert {"POST /mdoc-reissues 202", "GET /jobs/{job_id} 200"} <= set(checked)
    api.state.jobs.shutdown()
