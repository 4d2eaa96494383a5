"""Listings of everything an installation holds read only what they show, a batch at a time:
their memory does not grow with each row's bulk (a job's results, a credential's body)."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import Engine, event
from typer.testing import CliRunner

from mcred.cli.main import app
from tsm.db import JobRow, transaction
from tsm.jobs import job_lines

#: what a provisioning job's results hold: its certificates and MSOs (some 20 kB of JSON)
BULK = {"certificates": ["ab" * 5000, "cd" * 5000]}


def _jobs(engine: Engine, n: int) -> list[str]:
    ids = [f"{i:032x}" for i in range(n)]
    with transaction(engine) as conn:
        conn.execute(JobRow.__table__.insert(), [
            {"id": jid, "se_id": f"phone-{i % 3}", "kind": "provision", "state": "done" if i % 2 else "failed",
             "steps": ["open", "install", "close"], "next_step": 3 if i % 2 else 1, "input": {"phone_id": "x"},
             "results": BULK, "actor": "test", "attempts": 1, "error": None if i % 2 else "lost answer"}
            for i, jid in enumerate(ids)])
    return ids


def _statements(run) -> list[str]:  # noqa: ANN001
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001, ARG001
        seen.append(statement)

    event.listen(Engine, "before_cursor_execute", record)
    try:
        run()
    finally:
        event.remove(Engine, "before_cursor_execute", record)
    return [s for s in seen if "FROM tsm_jobs" in s]


def test_job_lines_read_no_jobs_input_or_results(engine):
    ids = _jobs(engine, 7)
    out: list = []
    [statement] = _statements(lambda: out.extend(job_lines(engine)))
    assert "results" not in statement and "input" not in statement and "sealed_secrets" not in statement
    assert [j.id for j in out] == ids
    assert out[0].current_step == "install" and out[0].error == "lost answer"
    assert out[1].current_step is None
    assert [j.id for j in job_lines(engine, "phone-1", unfinished=True)] == [ids[4]]
    assert [j.id for j in job_lines(engine, limit=2, offset=3)] == ids[3:5]


def test_mcred_tsm_jobs_lists_every_job_as_before_without_their_results(home: Path, db_url: str, monkeypatch):
    """``mcred tsm jobs`` loaded every job whole, results included, before printing the first:
    at 20,840 jobs on PostgreSQL 1.1 GB of memory and 12 s."""
    from mcred.context import Context

    monkeypatch.setenv("MCRED_DATABASE_URL", db_url)
    engine = Context.open().engine
    ids = _jobs(engine, 5)
    runner = CliRunner()
    answers: list = []
    statements = _statements(lambda: answers.append(runner.invoke(app, ["tsm", "jobs", "--json"])))
    assert statements and all("results" not in s for s in statements)
    r = answers[0]
    assert r.exit_code == 0, r.output
    assert r.output == json.dumps([
        {"id": jid, "phone": f"phone-{i % 3}", "phone_id": f"phone-{i % 3}", "kind": "provision",
         "state": "done" if i % 2 else "failed", "next_step": None if i % 2 else "install",
         "steps_done": 3 if i % 2 else 1, "steps": 3, "attempts": 1, "error": None if i % 2 else "lost answer"}
        for i, jid in enumerate(ids)], ensure_ascii=False, indent=2) + "\n"
    text = runner.invoke(app, ["tsm", "jobs", "--phone", "phone-0"]).output.splitlines()
    assert text == [f"{ids[0]}  phone-0  provision failed 1/3 next install", "    lost answer",
                    f"{ids[3]}  phone-0  provision done 3/3"]
    assert runner.invoke(app, ["tsm", "jobs", "--json", "--phone", "nobody"]).output == "[]\n"
    assert runner.invoke(app, ["tsm", "jobs", "--phone", "nobody"]).output == "no job on nobody\n"

