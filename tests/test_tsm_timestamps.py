"""The TSM's timestamps are aware UTC on SQLite and on PostgreSQL (dbtypes.UtcDateTime, as
the issuer's and the reader's): ``mcred tsm ses --json`` gave ``updated_at`` without an
offset on SQLite and with the session's own (``+09:00`` on a server set up in Japan) on
PostgreSQL, the TSM's rows read back naive on SQLite, and an aware time of another offset
was stored by its wall-clock digits there (nine hours late for a JST time).

PostgreSQL runs here in a session whose time zone is Asia/Tokyo: a server installed in
Japan answers in its own zone, and a time that is right only when it happens to be UTC is
caught there too. The stored form does not change (SQLite: the UTC digits, as the TSM
always wrote ``utcnow()``; PostgreSQL: timestamptz), so rows of the previous code read back
as they are: no data migration."""

from __future__ import annotations

import datetime as dt
import json
import os

import pytest
import sqlalchemy as sa
from documented import assert_documented
from sqlalchemy import event, insert, select
from test_tsm_jobs import provision, world  # noqa: F401 - fixtures
from typer.testing import CliRunner

from dbtypes import UtcDateTime
from mcred.cli.main import app
from mcred.db import make_engine, migrate, utc_session
from protocols.gp.apdu import CommandApdu
from tsm import records
from tsm.audit import AuditLog, audit_rows
from tsm.db import AuditRow, DriverStatement, SecureElementRow, TsmBase, transaction, utcnow

JST = dt.timezone(dt.timedelta(hours=9), "JST")
NOON_JST = dt.datetime(2026, 12, 4, 12, 0, 0, 250000, tzinfo=JST)  # 03:00:00.25Z

#: every timestamp of the TSM's tables
TIMESTAMPS = {"tsm_se": ("created_at", "updated_at"), "tsm_se_counters": ("updated_at",),
              "tsm_jobs": ("created_at", "updated_at"), "tsm_audit": ("at",),
              "tsm_seram_sessions": ("created_at",), "tsm_seram_messages": ("created_at",)}


def away_from_utc(db_url: str) -> str:
    """``db_url``; on PostgreSQL, for a session in Asia/Tokyo (the URL's options already name
    the test's schema)."""
    return db_url + "%20-ctimezone%3DAsia/Tokyo" if db_url.startswith("postgresql") else db_url


@pytest.fixture
def engine(db_url):  # for test_tsm_jobs.world too
    eng = make_engine(away_from_utc(db_url))
    if eng.dialect.name == "postgresql":
        # mcred's own engines run their sessions in UTC (mcred.db.utc_session); this one keeps
        # the Asia/Tokyo session the URL asks for, as another client's would: what the TSM
        # writes and reads must not depend on the session's zone
        event.remove(eng, "connect", utc_session)
    if eng.dialect.name == "sqlite":
        @event.listens_for(eng, "connect")
        def _fast(dbapi_conn, _rec):  # tests need no durability across power loss
            dbapi_conn.execute("PRAGMA synchronous=OFF")
    else:
        with eng.connect() as conn:
            assert conn.exec_driver_sql("SHOW timezone").scalar() == "Asia/Tokyo"
    migrate(eng)
    yield eng
    eng.dispose()


def _in_utc(value: object, since: dt.datetime, until: dt.datetime) -> bool:
    return (isinstance(value, dt.datetime) and value.tzinfo is dt.UTC and since <= value <= until)


def _use_cli_on(engine, home, monkeypatch) -> CliRunner:  # noqa: ANN001
    monkeypatch.setenv("MCRED_HOME", str(home))
    monkeypatch.setenv("MCRED_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    return CliRunner()


def test_every_tsm_timestamp_column_is_utc():
    """A plain DateTime column would bring the naive SQLite read (and the offset dropped on
    write) back: every timestamp of the TSM's tables is UtcDateTime."""
    columns = {table.name: tuple(c.name for c in table.columns if isinstance(c.type, (sa.DateTime, UtcDateTime)))
               for table in TsmBase.metadata.tables.values()}
    assert {t: c for t, c in columns.items() if c} == TIMESTAMPS
    plain = [f"{table.name}.{column.name}" for table in TsmBase.metadata.tables.values()
             for column in table.columns if isinstance(column.type, sa.DateTime)]
    assert not plain, f"TSM timestamp columns without UtcDateTime: {plain}"


def test_a_job_leaves_every_tsm_timestamp_aware_utc(world, monkeypatch):  # noqa: F811
    """A provisioning writes the SE record, its counters, the job and its audit, on SQLite
    partly straight on the driver (tsm.db.DriverStatement): each reads back aware UTC, when
    it was written; ``mcred tsm ses`` and ``mcred tsm audit`` print them with their offset."""
    since = utcnow()
    pid, se = world.phone()
    job = provision(world, pid)
    assert world.tsm.run(job, se.transmit).state == "done"
    until = utcnow()
    engine = world.tsm.engine
    with engine.connect() as conn:
        for name, columns in TIMESTAMPS.items():
            table = TsmBase.metadata.tables[name]
            rows = conn.execute(select(*(table.c[c] for c in columns))).all()
            assert rows or name.startswith("tsm_seram"), name  # no SERAM here
            for row in rows:
                assert all(_in_utc(v, since, until) for v in row), (name, row)
    # the ORM's rows too (tsm.audit.audit_rows), as the tests and the operators' scripts read them
    audit = audit_rows(engine, pid)
    assert len(audit) > 20 and all(_in_utc(r.at, since, until) for r in audit)

    runner = _use_cli_on(engine, world.home, monkeypatch)
    [listed] = json.loads(runner.invoke(app, ["tsm", "ses", "--json"]).output)
    updated = dt.datetime.fromisoformat(listed["updated_at"])
    assert listed["updated_at"].endswith("+00:00") and _in_utc(updated, since, until)
    [line] = runner.invoke(app, ["tsm", "ses"]).output.splitlines()
    assert line.endswith(f"  updated {updated:%Y-%m-%dT%H:%M:%S}Z")
    out = runner.invoke(app, ["tsm", "audit", "--json", "--phone", pid, "--limit", "1000"])
    trail = json.loads(out.output)
    assert [r["id"] for r in trail] == [r.id for r in audit]
    assert [r["at"] for r in trail] == [r.at.isoformat(timespec="seconds") for r in audit]
    assert all(r["at"].endswith("+00:00") for r in trail)
    text = runner.invoke(app, ["tsm", "audit", "--phone", pid, "--limit", "1000"]).output.splitlines()
    assert [line.split("  ")[0] for line in text] == [r["at"] for r in trail]


def test_a_time_of_another_offset_is_stored_as_its_instant_on_both_paths(engine):
    """An aware time not in UTC (a JST one) is stored as its instant by Core and by the
    driver path alike (SQLite kept its wall-clock digits: read back nine hours late); a UTC
    one, every time the TSM writes, keeps the driver's fast path (no UtcDateTime call)."""
    since = utcnow()
    audit = DriverStatement(insert(AuditRow.__table__))  # planned afresh, with the counting below
    calls = []
    real = UtcDateTime.process_bind_param

    def counted(self, value, dialect):  # noqa: ANN001
        calls.append(value)
        return real(self, value, dialect)

    log = AuditLog("op", "se-jst")
    log.event("job-created")
    log.event("step-done", "survey")
    log.pending[1]["at"] = NOON_JST
    UtcDateTime.process_bind_param = counted
    try:
        with transaction(engine) as conn:
            audit.executemany(conn, log.pending)
            conn.execute(insert(AuditRow.__table__), {**log.pending[1], "what": "by Core"})
        records.load_or_create(engine, "se-jst")
        records.update_se(engine, "se-jst", state="new")  # planned (its samples checked)
        calls.clear()
        records.update_se(engine, "se-jst", state="active")  # utcnow(): the driver's fast path
        if engine.dialect.name == "sqlite":
            assert calls == []
        with transaction(engine) as conn:
            records._UPDATE.execute(conn, {"b_se_id": "se-jst", "updated_at": NOON_JST})
    finally:
        UtcDateTime.process_bind_param = real
    with engine.connect() as conn:
        ats = conn.execute(select(AuditRow.what, AuditRow.at).where(AuditRow.se_id == "se-jst")
                           .order_by(AuditRow.id)).all()
        updated = conn.execute(select(SecureElementRow.updated_at)).scalar_one()
        later = conn.execute(select(AuditRow.what).where(AuditRow.at > dt.datetime(2026, 12, 4, 11, 59, 59, tzinfo=JST),
                                                          AuditRow.at < dt.datetime(2026, 12, 4, 3, 0, 1, tzinfo=dt.UTC))
                             .order_by(AuditRow.id)).scalars().all()
    assert _in_utc(ats[0].at, since, utcnow())
    assert [(w, a) for w, a in ats[1:]] == [("survey", NOON_JST), ("by Core", NOON_JST)]
    assert all(a.tzinfo is dt.UTC for _, a in ats) and ats[1].at.hour == 3
    assert updated == NOON_JST and updated.tzinfo is dt.UTC
    assert later == ["survey", "by Core"]  # compared as the same instant in SQL too


def _previous_columns(table: sa.Table, columns: tuple[str, ...]) -> sa.Table:
    """``table`` as the previous code declared it: its timestamps plain DateTime(timezone=True)."""
    return sa.Table(table.name, sa.MetaData(), *(
        sa.Column(c.name, sa.DateTime(timezone=True) if c.name in columns else c.type, primary_key=c.primary_key)
        for c in table.columns))


ROWS = {"tsm_se": {"se_id": "se-old", "kvn": 0x31, "state": "active"},
        "tsm_se_counters": {"se_id": "se-old", "kvn": 0x31, "counter": 7},
        "tsm_jobs": {"id": "0" * 32, "se_id": "se-old", "kind": "provision", "state": "done", "steps": [],
                     "next_step": 0, "input": {}, "results": {}, "actor": "op", "attempts": 1},
        "tsm_audit": {"id": 1, "actor": "op", "se_id": "se-old", "event": "job-done", "detail": {}},
        "tsm_seram_sessions": {"session_id": "s-old", "owner": "w1"},
        "tsm_seram_messages": {"id": 1, "session_id": "s-old", "owner": "w1", "route": "handshake", "body": b"{}"}}


def test_rows_the_previous_code_wrote_read_back_aware_and_are_stored_alike(engine):
    """Rows of every TSM table written with the previous column type (plain DateTime) read
    back as aware UTC, the same instant; on SQLite the new type stores the very same text
    (so no data migration), on PostgreSQL the same instant."""
    at = dt.datetime(2026, 12, 1, 9, 30, 15, 123456, tzinfo=dt.UTC)  # utcnow(), as the TSM wrote
    assert set(ROWS) == set(TIMESTAMPS)
    for name, columns in TIMESTAMPS.items():
        table = TsmBase.metadata.tables[name]
        old = _previous_columns(table, columns)
        with transaction(engine) as conn:
            conn.execute(insert(old), {**ROWS[name], **dict.fromkeys(columns, at)})
        with engine.connect() as conn:
            [row] = conn.execute(select(*(table.c[c] for c in columns))).all()
            assert all(v == at and v.tzinfo is dt.UTC for v in row), (name, row)
            stored_old = conn.execute(select(*(sa.cast(old.c[c], sa.String) for c in columns))).one()
        with transaction(engine) as conn:  # the same row written now, by the TSM's table
            conn.execute(table.delete())
            conn.execute(insert(table), {**ROWS[name], **dict.fromkeys(columns, at)})
        with engine.connect() as conn:
            stored_new = conn.execute(select(*(sa.cast(old.c[c], sa.String) for c in columns))).one()
        assert stored_new == stored_old, name
        if engine.dialect.name == "sqlite":
            assert stored_new[0] == "2026-12-01 09:30:15.123456"


def test_the_api_tsm_routes_answer_the_same_instants_on_every_database(home, db_url, monkeypatch):
    """``GET /tsm-audit`` gives each record's time in UTC, the same answer on SQLite and
    PostgreSQL (a JST time recorded by the TSM was nine hours late on SQLite), held to the
    OpenAPI document (``format: date-time``); ``GET /tsm-jobs`` too."""
    from fastapi.testclient import TestClient

    from issuer.api.auth import create_token
    from mcred.context import Context
    from mcred.service import create_app

    monkeypatch.setattr(os, "fsync", lambda fd: None)
    ctx = Context.open(home, away_from_utc(db_url))
    log = AuditLog("op", "se-api", job_id="a" * 32, step="survey")
    log.command(CommandApdu(0x80, 0xF2, 0x40, 0x02, b"\x4f\x00"), 0x9000, "GET STATUS applications")
    log.event("step-done", "survey")
    for record in log.pending:
        record["at"] = NOON_JST
    log.flush_now(ctx.engine)
    _, tok = create_token(ctx.sessions, ["operator"])
    headers = {"Authorization": f"Bearer {tok}"}
    app_ = create_app(ctx, job_workers=1)
    with TestClient(app_) as c:
        r = c.get("/tsm-audit", headers=headers, params={"phone_id": "se-api"})
        assert r.status_code == 200, r.text
        assert_documented(app_, "GET", "/tsm-audit", r)
        assert [(x["at"], x["event"], x["command"], x["sw"]) for x in r.json()["records"]] == [
            ("2026-12-04T03:00:00+00:00", "apdu", "80F24002", "9000"),
            ("2026-12-04T03:00:00+00:00", "step-done", None, None)]
        jobs = c.get("/tsm-jobs", headers=headers)
        assert jobs.status_code == 200
        assert_documented(app_, "GET", "/tsm-jobs", jobs)
