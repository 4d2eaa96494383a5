"""The listings that grow with the installation read their page off an index, on SQLite and
PostgreSQL: the statement a route runs is captured and its plan asked for (no timing).

PostgreSQL's planner takes a sort of a small table over an index, so the PostgreSQL plans
are asked with sequential scans and sorts priced out (``enable_seqscan``/``enable_sort``
off): what remains is whether an index can give the order at all.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from issuer.api.auth import create_token
from mcred.context import Context
from mcred.service import create_app


def _statements(engine, run, needle: str) -> list[tuple[str, object]]:
    """The statements (with their parameters) containing ``needle`` that ``run()`` executes."""
    seen: list[tuple[str, object]] = []

    def record(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001, ARG001
        if needle in statement:
            seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        run()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert seen, f"no statement with {needle!r} ran"
    return seen


def _plan(engine, statement: str, parameters, *, priced: bool = True) -> str:  # noqa: ANN001
    """The plan of ``statement``; ``priced=False``: as the planner finds it, from the table's
    statistics (the caller filled the table and analysed it)."""
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql" and priced:
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
            conn.exec_driver_sql("SET LOCAL enable_sort = off")
        if engine.dialect.name == "postgresql":
            rows = conn.exec_driver_sql("EXPLAIN " + statement, parameters).all()
            return "\n".join(r[0] for r in rows)
        rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
        return "\n".join(str(r[-1]) for r in rows)


def _credentials_statement(ctx: Context, query: str) -> tuple[str, object]:
    """The one statement on ``credentials`` that ``GET /credentials?QUERY`` runs, with its
    parameters (the answer a 200)."""
    _, token = create_token(ctx.sessions, ["issuer"], "plans")
    with TestClient(create_app(ctx)) as client:
        def page() -> None:
            r = client.get(f"/credentials?{query}", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 200, r.text

        [(statement, parameters)] = _statements(ctx.engine, page, "FROM credentials")
    return statement, parameters


@pytest.mark.parametrize("query", ["limit=100", "limit=100&offset=200", "status=valid&limit=50",
                                   "kind=mdoc"])
def test_a_page_of_credentials_is_read_off_the_issuance_order_index(home: Path, db_url: str, query: str):
    """GET /credentials sorted the whole credentials table (bodies included) for every page:
    at 60,000 credentials on PostgreSQL an 80 MB sort on disk, 66 ms for the first page and
    260 ms for one at offset 50,000."""
    ctx = Context(home=home, database=db_url)
    statement, parameters = _credentials_statement(ctx, query)
    assert "credentials.body" not in statement  # the page shows no certificate or IssuerSigned
    plan = _plan(ctx.engine, statement, parameters)
    assert "ix_credential_issued" in plan, plan
    assert "Sort" not in plan and "TEMP B-TREE" not in plan, plan
    ctx.engine.dispose()


@pytest.mark.parametrize("query", ["expiring_within=90", "expiring_within=90&kind=jpki-auth&limit=20&offset=40",
                                   "expiring_within=3660&status=valid"])
def test_the_expiry_notices_are_read_off_the_expiry_index(home: Path, db_url: str, query: str):
    """GET /credentials?expiring_within= (mcred credential list --expiring-within) read every
    valid credential, and every phone's mdocs are valid with an expiry inside any notice's
    horizon (30-day MSOs): the certificates expiring are one range of ix_credential_expiry
    per kind instead."""
    ctx = Context(home=home, database=db_url)
    statement, parameters = _credentials_statement(ctx, query)
    assert "credentials.body" not in statement
    plan = _plan(ctx.engine, statement, parameters)
    assert "ix_credential_expiry" in plan, plan
    ctx.engine.dispose()


def test_a_crl_rebuild_reads_only_its_partitions_revoked_certificates_off_an_index(db_url: str):
    """The CRL rebuild's look-up of revoked and held certificates went through the index on
    (issuer_key, serial): every certificate of the issuing key, in every partition, read
    and filtered (at 20,840 holders in four partitions, 28 ms of every rebuild; 1.6 ms on
    the index)."""
    from test_issuer_jpki_support import open_issuer, provision

    from issuer import revocation

    issuer = open_issuer(db_url)
    phone = provision(issuer)
    revocation.revoke(issuer.sessions, phone.phone_id, "keyCompromise", "auth")
    engine = issuer.sessions.kw["bind"]
    [(statement, parameters)] = _statements(engine, lambda: issuer.crl("auth", "131016"),
                                            "credentials.partition =")
    plan = _plan(engine, statement, parameters)
    assert "ix_credential_crl" in plan, plan


def test_the_last_records_of_one_tsm_audit_event_are_read_off_an_index(engine):
    """``mcred tsm audit --event E`` walked back through the whole TSM audit (every command
    sent, some 90 records a provisioning) to find a rare event: at 1.8 million records
    (20,840 provisionings) 375 ms for an event that never happened."""
    from tsm.audit import recent

    [(statement, parameters)] = _statements(engine, lambda: recent(engine, event="counter-regression", limit=200),
                                            "FROM tsm_audit")
    plan = _plan(engine, statement, parameters)
    assert "ix_tsm_audit_event" in plan, plan
    assert "Sort" not in plan and "TEMP B-TREE" not in plan, plan


def test_the_audit_of_one_subject_is_read_off_the_subject_index(db_url: str):
    """``mcred audit --subject H`` (GET /audit?subject=) asked for the events of H, of its
    credentials and of its phones as three ORed conditions, and PostgreSQL walked back
    through the whole audit by id testing each event: at 105,000 events 174 ms for a holder
    with five. Asked of an audit of 5,000 events, analysed, as the planner finds it."""
    import datetime as dt

    from sqlalchemy.orm import sessionmaker

    from issuer.audit import events
    from issuer.db import AuditEvent
    from mcred.db import make_engine, migrate

    engine = make_engine(db_url)
    migrate(engine)
    at = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    with engine.begin() as conn:
        conn.execute(AuditEvent.__table__.insert(), [
            {"at": at, "actor": "test", "action": "credential.revoke", "subject": f"{i:032x}", "detail": {}}
            for i in range(5000)])
        conn.exec_driver_sql("ANALYZE issuer_audit")
    [(statement, parameters)] = _statements(
        engine, lambda: events(sessionmaker(engine), subject=f"{17:032x}"), "FROM issuer_audit")
    plan = _plan(engine, statement, parameters, priced=False)
    assert "ix_issuer_audit_subject" in plan, plan
    assert [e["subject"] for e in events(sessionmaker(engine), subject=f"{17:032x}")] == [f"{17:032x}"]
    engine.dispose()


@pytest.mark.parametrize("listing", ["holders", "tsm-jobs"])
def test_a_page_of_holders_or_tsm_jobs_is_read_off_the_creation_order_index(home: Path, db_url: str, listing: str):
    """GET /holders and GET /tsm-jobs (mcred holder list, mcred tsm jobs) sorted every
    holder or job for each page (at 20,840 of them some 10 ms a page, growing with the
    installation)."""
    ctx = Context(home=home, database=db_url)
    _, token = create_token(ctx.sessions, ["operator"], "plans")
    table = {"holders": "FROM holders", "tsm-jobs": "FROM tsm_jobs"}[listing]
    with TestClient(create_app(ctx)) as client:
        def page() -> None:
            r = client.get(f"/{listing}?limit=20&offset=40", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 200, r.text

        [(statement, parameters)] = _statements(ctx.engine, page, table)
    plan = _plan(ctx.engine, statement, parameters)
    assert {"holders": "ix_holder_created", "tsm-jobs": "ix_tsm_jobs_created"}[listing] in plan, plan
    assert "Sort" not in plan and "TEMP B-TREE" not in plan, plan
    ctx.engine.dispose()


@pytest.mark.parametrize(("which", "family"), [("action", "token"), ("action", "credential"), ("action", "jpki.issue"),
                                                ("actor", "token:7"), ("actor", "cli")])
def test_a_family_of_actions_or_actors_is_read_off_its_index(db_url: str, which: str, family: str):
    """``mcred audit --action P`` / ``--actor A`` (GET /audit?action=&actor=) matched P's
    family with a LIKE prefix, which could use no index (SQLite's LIKE ignores case;
    PostgreSQL's uses one only in the "C" collation, and the database's may be another): at
    105,000 events 15-30 ms for a rare action or actor, or one never recorded, on both.
    Asked of an audit of 5,000 events (a rare family; a common one of three values; one
    value), analysed on PostgreSQL, as the planner finds it."""
    import datetime as dt

    from sqlalchemy.orm import sessionmaker

    from issuer.audit import events
    from issuer.db import AuditEvent
    from mcred.db import make_engine, migrate

    engine = make_engine(db_url)
    migrate(engine)
    at = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    common = ["jpki.issue", "mdoc.issue", "holder.register", "credential.revoke", "credential.hold",
              "credential.release"]
    actors = ["cli:ops", "cli:root", "cli:night", "mcred.api", "mcred.jobs"]
    with engine.begin() as conn:
        conn.execute(AuditEvent.__table__.insert(), [
            {"at": at, "actor": f"token:{i % 9}:svc" if i % 1000 == 7 else actors[i % len(actors)],
             "action": "token.create" if i % 1000 == 7 else common[i % len(common)],
             "subject": f"{i:032x}", "detail": {}} for i in range(5000)])
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("ANALYZE issuer_audit")
            # the range is the family only where the column compares code points
            assert conn.exec_driver_sql("SELECT collation_name FROM information_schema.columns WHERE "
                                        "table_name = 'issuer_audit' AND column_name = %(c)s "
                                        "AND table_schema = current_schema()", {"c": which}).scalar() == "C"
    index = f"ix_issuer_audit_{which}"
    [(statement, parameters)] = _statements(
        engine, lambda: events(sessionmaker(engine), **{which: family}, limit=20), "issuer_audit.detail")
    plan = _plan(engine, statement, parameters, priced=False)
    assert "Seq Scan" not in plan and "SCAN issuer_audit" not in plan, plan  # no walk through the audit
    rare = family.startswith("token")
    if rare or engine.dialect.name == "sqlite":
        assert index in plan, plan
    if engine.dialect.name == "sqlite":  # no statistics: each value's newest events off the index
        tables = [line for line in plan.splitlines() if "issuer_audit" in line]
        assert all(f"INDEX {index} ({which}=?)" in line or "PRIMARY KEY" in line for line in tables), plan
    elif not rare:  # a common family: newest first off an index, no sort of its every event
        assert "Sort" not in plan, plan
    got = events(sessionmaker(engine), **{which: family}, limit=20)
    sep = "." if which == "action" else ":"
    assert len(got) == (5 if family == "token" else 1 if family == "token:7" else 20)
    assert all(e[which] == family or e[which].startswith(family + sep) for e in got)
    assert [e["id"] for e in got] == sorted((e["id"] for e in got), reverse=True)
    engine.dispose()


def test_a_subjects_events_of_an_action_are_read_off_the_subject_index(home: Path, db_url: str, monkeypatch):
    """With ix_issuer_audit_action, SQLite (no statistics) took it for an action's events of a
    few subjects, walking every event of that action: a holder's erasure (its card numbers
    in jpki.issue events), an mdoc refresh (its phone's superseded revocations), ``mcred tsa
    log --serial``. These look their subjects up, the action only a filter (and the
    erasure's two ORed conditions read the whole audit on PostgreSQL)."""
    import datetime as dt

    from sqlalchemy.orm import sessionmaker
    from typer.testing import CliRunner

    from issuer.db import AuditEvent
    from issuer.holders import _redact_card_numbers
    from mcred.cli.main import app
    from mcred.db import make_engine, migrate
    from mcred.provision import superseded_revocations

    engine = make_engine(db_url)
    migrate(engine)
    at = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    actions = ["jpki.issue", "credential.revoke", "tsa.stamp", "holder.register"]
    with engine.begin() as conn:
        conn.execute(AuditEvent.__table__.insert(), [
            {"at": at, "actor": "test", "action": actions[i % 4], "subject": f"{i:032x}", "detail": {}}
            for i in range(5000)])
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("ANALYZE issuer_audit")
    sessions = sessionmaker(engine)

    def erase() -> None:
        with sessions() as s:
            _redact_card_numbers(s, "ab" * 16)

    def refresh() -> None:
        with sessions() as s:
            superseded_revocations(s, "phone-1")

    monkeypatch.setenv("MCRED_DATABASE_URL", db_url)

    def log() -> None:
        assert CliRunner().invoke(app, ["tsa", "log", "--serial", "abc"]).exit_code == 1

    for run in (erase, refresh, log):
        for statement, parameters in _statements(engine if run is not log else sa_engine(), run, "FROM issuer_audit"):
            plan = _plan(engine, statement, parameters, priced=False)
            assert "ix_issuer_audit_subject" in plan and "ix_issuer_audit_action" not in plan, (run.__name__, plan)
    engine.dispose()


def sa_engine():  # noqa: ANN201 - every engine (the CLI opens its own)
    from sqlalchemy import Engine

    return Engine


def test_sqlite_gathers_the_planners_statistics_when_a_command_ends(tmp_path: Path):
    """SQLite has no autovacuum: without ANALYZE its planner never learns a table's size,
    and its heuristics turned three unrelated queries into scans when the audit index came.
    A command's process gathers the statistics of the tables it used as it exits
    (mcred.db.optimize_sqlite), as SQLite asks of an application: a second process finds
    them in sqlite_stat1."""
    import sqlite3
    import subprocess
    import sys

    script = (
        "import datetime as dt, sys\n"
        "from mcred.context import Context\n"
        "from issuer.db import AuditEvent\n"
        "ctx = Context.open(__import__('pathlib').Path(sys.argv[1]))\n"
        "at = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)\n"
        "with ctx.engine.begin() as conn:\n"
        "    conn.execute(AuditEvent.__table__.insert(), [{'at': at, 'actor': f'a{i % 7}',\n"
        "                 'action': 'credential.revoke', 'subject': f'{i:032x}', 'detail': {}} for i in range(500)])\n"
        "with ctx.engine.connect() as conn:\n"
        "    conn.exec_driver_sql(\"SELECT count(*) FROM issuer_audit WHERE actor = 'a3'\").one()\n")
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True,
                          timeout=120, env={**__import__("os").environ, "MCRED_DATABASE_URL": ""})
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(tmp_path / "mcred.sqlite3") as db:
        stats = dict(db.execute("SELECT idx, stat FROM sqlite_stat1 WHERE tbl = 'issuer_audit'").fetchall())
    # estimates: ANALYZE reads a bounded sample of each index (mcred.db.SQLITE_ANALYSIS_LIMIT)
    assert set(stats) >= {"ix_issuer_audit_actor", "ix_issuer_audit_subject"}, stats
