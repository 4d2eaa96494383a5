"""The TSM's bookkeeping on the run's own connection: a step's progress, lease renewal and
audit records are one transaction; the sequence counter record only ever rises."""

from __future__ import annotations

import pytest
from test_tsm_jobs import check_provisioned, engine, provision, world  # noqa: F401 - fixtures

from tsm import records
from tsm.audit import AuditLog, audit_rows
from tsm.db import transaction


class AuditDown(Exception):
    pass


def _audit_fails_at(monkeypatch, step: str) -> dict:
    """Make the audit write of ``step``'s completion fail; set ``["step"]`` to move it
    (None: nothing fails)."""
    real_flush = AuditLog.flush
    failing = {"step": step}

    def flush(self, conn):
        if any(r["event"] == "step-done" and r["what"] == failing["step"] for r in self.pending):
            raise AuditDown("audit table unavailable")
        real_flush(self, conn)

    monkeypatch.setattr(AuditLog, "flush", flush)
    return failing


def test_a_step_whose_audit_write_fails_is_not_recorded(world, monkeypatch):  # noqa: F811
    pid, se = world.phone()
    job = provision(world, pid)
    failing = _audit_fails_at(monkeypatch, "survey")
    with pytest.raises(AuditDown):
        world.tsm.run(job, se.transmit)
    view = world.tsm.job(job)
    assert view.current_step == "survey"  # neither the index nor the results moved
    assert "survey" not in view.results and "check-keys" in view.results
    done = [r.what for r in audit_rows(world.tsm.engine, pid) if r.event == "step-done"]
    assert done == ["open-session", "rotate-keys", "check-keys"]
    failing["step"] = None
    assert world.tsm.run(job, se.transmit).state == "done"


def test_counter_record_never_goes_down(engine):  # noqa: F811
    with engine.connect() as conn:
        for bind in (engine, conn):
            se = f"se-{type(bind).__name__}"
            assert records.last_counter(bind, se, 0x31) is None
            records.store_counter(bind, se, 0x31, 5)
            records.store_counter(bind, se, 0x31, 3)
            assert records.last_counter(bind, se, 0x31) == 5
            records.store_counter(bind, se, 0x31, 9)
            assert records.last_counter(bind, se, 0x31) == 9
            assert records.last_counter(bind, se, 0x30) is None
        assert not conn.in_transaction()  # nothing left open between calls


def test_nested_transaction_on_a_connection_commits_once(engine):  # noqa: F811
    with engine.connect() as conn:
        with pytest.raises(RuntimeError), transaction(conn) as c:
            records.load_or_create(c, "se-nested")  # joins, does not commit on its own
            raise RuntimeError("abort the outer transaction")
        assert records.load(conn, "se-nested") is None
        records.load_or_create(conn, "se-nested")
    assert records.load(engine, "se-nested") is not None


def test_a_lease_confirmed_moments_ago_is_trusted_and_the_commit_still_fences(engine):  # noqa: F811
    if engine.dialect.name == "postgresql":
        pytest.skip("PostgreSQL holds a row lock, not a lease")
    from sqlalchemy import update

    from tsm.db import SeLockRow
    from tsm.errors import LockLostError
    from tsm.lock import acquire

    now = [1000.0]
    lock = acquire(engine, "se-lease", "a", lease_s=60, clock=lambda: now[0])
    with engine.begin() as conn:  # a worker whose clock runs far ahead takes the row over
        conn.execute(update(SeLockRow).where(SeLockRow.se_id == "se-lease")
                     .values(owner="b", token=SeLockRow.token + 1))
    now[0] += 1
    lock.check()  # confirmed 1 s ago, 59 s of lease left: not asked again
    with pytest.raises(LockLostError), engine.begin() as conn:
        lock.renew_in(conn)  # but the step's commit is fenced by owner and token
    now[0] += 15  # a quarter of the lease since the last confirmation: ask the database
    with pytest.raises(LockLostError):
        lock.check()


def test_first_contact_creates_the_lock_row_already_taken(engine):  # noqa: F811
    from tsm.errors import LockBusyError
    from tsm.lock import acquire

    a = acquire(engine, "se-first", "a", timeout_s=1)
    assert a.token == 1
    with pytest.raises(LockBusyError):
        acquire(engine, "se-first", "b", timeout_s=0.2)  # the row exists and is held
    a.release()
    b = acquire(engine, "se-first", "b", timeout_s=1)
    assert b.token == 2
    b.release()


def test_a_record_created_at_first_contact_reads_back_the_same(engine):  # noqa: F811
    created = records.load_or_create(engine, "se-new")
    assert created == records.load(engine, "se-new")
    assert records.load_or_create(engine, "se-new") == created


def test_the_driver_path_stores_what_core_stores_and_raises_core_errors(engine):  # noqa: F811
    import datetime as dt

    from sqlalchemy import insert, select
    from sqlalchemy.exc import IntegrityError

    from tsm.db import AuditRow, DriverStatement, SeLockRow

    at = dt.datetime(2026, 12, 3, 11, 20, 58, 123456, tzinfo=dt.UTC)
    row = dict(at=at, actor="a", se_id="se-drv", job_id=None, step="s", event="apdu",
               what="STORE DATA", cla=0x84, ins=0xE2, p1=0, p2=None, lc=7, sw=0x9000,
               detail={"kvn": 49, "aid": "A0"})
    table = AuditRow.__table__
    empty = {**row, "what": "no detail", "detail": {}}
    with engine.begin() as conn:
        conn.execute(insert(table), [row, empty])
        DriverStatement(insert(table)).executemany(conn, [row, {**row, "what": "second"}])
        DriverStatement(insert(table)).executemany(conn, [empty])
    with engine.connect() as conn:
        got = conn.execute(select(table).order_by(table.c.id)).all()
        raw = conn.exec_driver_sql("SELECT at, detail FROM tsm_audit ORDER BY id").all()
    assert [r._mapping["what"] for r in got] == ["STORE DATA", "no detail", "STORE DATA",
                                                "second", "no detail"]
    a, b = ({k: v for k, v in r._mapping.items() if k != "id"} for r in (got[0], got[2]))
    assert a == b and a["detail"] == {"kvn": 49, "aid": "A0"}
    assert raw[0] == raw[2]  # the very same stored text, time included
    assert raw[1] == raw[4] and got[4]._mapping["detail"] == {}  # an empty detail too
    from sqlalchemy import bindparam
    query = select(table.c.id, table.c.at, table.c.detail, table.c.sw).where(
        table.c.se_id == bindparam("b_se")).order_by(table.c.id)
    with engine.connect() as conn:
        read = DriverStatement(query).rows(conn, {"b_se": "se-drv"})
        assert [tuple(r) for r in read] == [tuple(r) for r in conn.execute(query, {"b_se": "se-drv"})]
        assert read[2].detail == {"kvn": 49, "aid": "A0"} and read[3].at == got[3].at
        assert read[1].detail == read[4].detail == {}
    locks = SeLockRow.__table__
    with pytest.raises(IntegrityError), engine.begin() as conn:
        stmt = DriverStatement(insert(locks))
        values = {"se_id": "se-drv", "owner": None, "token": 0, "expires_ms": 0}
        stmt.execute(conn, values)
        stmt.execute(conn, values)  # the same key again


def test_the_driver_path_counts_the_rows_an_insert_wrote(engine):  # noqa: F811
    # SQLAlchemy keeps an INSERT's row count only when asked: without it PostgreSQL said -1,
    # and a first contact's record creation read the record back it had just written
    from tsm.db import transaction

    created = records._CREATE_IF_ABSENT[engine.dialect.name]
    values = {"se_id": "se-count", "kvn": 0x30, "state": "new",
              "created_at": records.utcnow(), "updated_at": records.utcnow()}
    with transaction(engine) as conn:
        assert created.execute(conn, values) == 1  # inserted
        assert created.execute(conn, values) == 0  # there already: nothing done


def test_a_session_counter_is_recorded_even_when_its_step_commit_fails(world, monkeypatch):  # noqa: F811
    # open-session and rotate-keys leave their session's counter and identity to the step's
    # commit (nothing is sent in between); a run that ends before that commit still writes them
    pid, se = world.phone()
    job = provision(world, pid)
    failing = _audit_fails_at(monkeypatch, "open-session")
    with pytest.raises(AuditDown):
        world.tsm.run(job, se.transmit)
    assert world.tsm.job(job).current_step == "open-session"
    assert records.last_counter(world.tsm.engine, pid, 0x30) == 1
    assert records.load(world.tsm.engine, pid).kdd is not None
    failing["step"] = "rotate-keys"
    with pytest.raises(AuditDown):
        world.tsm.run(job, se.transmit)
    assert world.tsm.job(job).current_step == "rotate-keys"
    assert records.last_counter(world.tsm.engine, pid, 0x30) == 2
    assert records.last_counter(world.tsm.engine, pid, 0x31) == 3  # the reopened session
    assert records.load(world.tsm.engine, pid).kvn == 0x31
    failing["step"] = None
    assert world.tsm.run(job, se.transmit).state == "done"


def test_install_steps_reuse_the_sessions_registry_and_done_reads_it(world):  # noqa: F811
    from test_tsm_jobs import apdu_whats

    pid, se = world.phone()
    assert world.tsm.run(provision(world, pid), se.transmit).state == "done"
    whats = apdu_whats(world.tsm.engine, pid)
    status = [i for i, w in enumerate(whats) if w == "GET STATUS applications"]
    installs = [i for i, w in enumerate(whats) if w.startswith("INSTALL [for install]")]
    # survey's (which install-jpki, right after it, reuses), install-mdoc's (JPKI commands
    # came in between) and done's own read
    assert len(status) == 3
    assert status[0] < installs[0] < status[1] < installs[1] < status[2]
    assert whats[status[0] + 1] == "INSTALL [for install] jpki"


def _step_whats(eng, pid: str, step: str) -> list[str]:
    return [r.what for r in audit_rows(eng, pid) if r.event == "apdu" and r.step == step]


def test_generate_steps_use_the_key_slots_their_session_knows(world):  # noqa: F811
    pid, se = world.phone()
    assert world.tsm.run(provision(world, pid), se.transmit).state == "done"
    eng = world.tsm.engine
    # install-jpki created the instance (so no key), generate-sign-key's GENERATE added one:
    # neither generate step reads the state; write-sign-cert's read (certificates) and the
    # WRITE CERT after it keep generate-auth-key from reading too; install-mdoc's instance
    # is new, so generate-device-keys goes straight to GENERATE
    assert _step_whats(eng, pid, "generate-sign-key") == [
        "INSTALL [for personalization] jpki", "STORE DATA jpki GENERATE KEY sign"]
    assert _step_whats(eng, pid, "generate-auth-key") == ["STORE DATA jpki GENERATE KEY auth"]
    assert _step_whats(eng, pid, "generate-device-keys") == [
        "INSTALL [for personalization] mdoc", "STORE DATA mdoc GENERATE KEYS x2"]


@pytest.mark.parametrize("crash_after", ["install-jpki", "generate-sign-key", "install-mdoc"])
def test_a_resumed_generate_step_reads_the_key_slots_first(world, crash_after):  # noqa: F811
    from test_tsm_fakes import Crash

    pid, se = world.phone()
    job = provision(world, pid)

    def crash(done):
        if done == crash_after:
            raise Crash(done)

    with pytest.raises(Crash):
        world.tsm.run(job, se.transmit, after_step=crash)
    assert world.tsm.run(job, se.transmit).state == "done"
    eng = world.tsm.engine
    # the step after the crash runs in a new session, which knows nothing of the applet
    nxt = {"install-jpki": "generate-sign-key", "generate-sign-key": "issue-sign-cert",
           "install-mdoc": "generate-device-keys"}[crash_after]
    whats = _step_whats(eng, pid, nxt)
    if nxt == "generate-sign-key":
        assert whats[:2] == ["INSTALL [for personalization] jpki", "STORE DATA jpki READ STATE"]
    if nxt == "generate-device-keys":
        assert whats[:2] == ["INSTALL [for personalization] mdoc", "STORE DATA mdoc READ STATE"]
    if crash_after == "generate-sign-key":
        # the re-run generate-sign-key (its commit never landed) found the key and kept it
        gen = [w for w in _step_whats(eng, pid, "generate-sign-key") if "GENERATE" in w]
        assert gen == ["STORE DATA jpki GENERATE KEY sign"]
        assert "STORE DATA jpki READ STATE" in _step_whats(eng, pid, "generate-sign-key")
    assert sum(w.startswith("STORE DATA jpki GENERATE KEY") for w in
               (r.what for r in audit_rows(eng, pid) if r.event == "apdu")) == 2


def test_the_driver_paths_datetime_text_is_sqlalchemys():
    import datetime as dt
    import random

    from sqlalchemy import DateTime
    from sqlalchemy.dialects import sqlite

    from tsm.db import _iso_datetime_once

    d = sqlite.dialect()
    process = DateTime(timezone=True).dialect_impl(d).bind_processor(d)
    fast = _iso_datetime_once(process)
    assert fast is not process
    rnd = random.Random(5)
    for _ in range(2000):
        v = dt.datetime(rnd.randint(1, 9999), rnd.randint(1, 12), rnd.randint(1, 28), rnd.randint(0, 23),
                        rnd.randint(0, 59), rnd.randint(0, 59), rnd.choice((0, 7, rnd.randint(0, 999999))),
                        tzinfo=rnd.choice((None, dt.UTC, dt.timezone(dt.timedelta(hours=-5)))))
        assert fast(v) == process(v)
    for other in (None, dt.date(2026, 12, 3)):
        assert fast(other) == process(other)
    custom = sqlite.DATETIME(storage_format="%(year)04d/%(month)02d/%(day)02d").bind_processor(d)
    assert _iso_datetime_once(custom) is custom  # another storage format: left as it is


def test_only_a_lock_wait_that_ran_out_is_called_busy(engine):  # noqa: F811
    """PostgreSQL's row lock: another failure of the statement (here an owner longer than
    its column) used to be reported as "locked by another worker (waited 30 s)"."""
    from sqlalchemy.exc import DataError

    from tsm.lock import acquire

    if engine.dialect.name != "postgresql":
        pytest.skip("a VARCHAR's width is enforced by PostgreSQL only")
    with pytest.raises(DataError):
        acquire(engine, "se-long-owner", "o" * 200, timeout_s=0.2)
    acquire(engine, "se-long-owner", "o", timeout_s=1).release()  # nothing was left held


def test_an_se_id_or_actor_the_tables_cannot_keep_is_refused_before_anything_is_written(world):  # noqa: F811
    """The job and audit tables keep an SE id 64 wide and an actor 128 wide. A Python caller
    of the TSM passing longer ones got a DataError from PostgreSQL (SQLite kept them): now a
    JobInputError naming the field, on both backends, and no job row or audit record."""
    from tsm.errors import JobInputError
    from tsm.jobs import ACTOR_MAX, SE_ID_MAX, Tsm

    tsm = world.tsm
    before = len(tsm.jobs())
    cases = [
        (lambda: tsm.create_job("s" * (SE_ID_MAX + 1), "delete-credentials"), "SE id"),
        (lambda: tsm.create_job("", "delete-credentials"), "SE id"),
        (lambda: tsm.create_job("se\x00x", "delete-credentials"), "SE id"),
        (lambda: tsm.create_job("se-ok", "delete-credentials", actor="a" * (ACTOR_MAX + 1)), "actor"),
        (lambda: tsm.create_job("se-ok", "delete-credentials", actor=""), "actor"),
        (lambda: tsm.clear_quarantine("se-ok", "a" * (ACTOR_MAX + 1), "checked"), "actor"),
        (lambda: Tsm(tsm.engine, tsm.master, actor="a" * (ACTOR_MAX + 1)), "actor"),
    ]
    for call, named in cases:
        with pytest.raises(JobInputError, match=named):
            call()
    assert len(tsm.jobs()) == before
    assert audit_rows(tsm.engine, "se-ok") == []
    job = tsm.create_job("s" * SE_ID_MAX, "delete-credentials", actor="a" * ACTOR_MAX)  # the widths fit
    assert tsm.job(job).actor == "a" * ACTOR_MAX
    with pytest.raises(JobInputError, match="actor"):
        tsm.run(job, lambda apdu: b"\x6f\x00", actor="a" * (ACTOR_MAX + 1))
    assert tsm.job(job).state == "pending"  # the run never started


def test_read_state_rides_with_the_sequence_before_the_step_that_needs_it(world):  # noqa: F811
    """PROVE and WRITE CERT end with READ STATE: the write steps and set-pins take the state
    from there and send no READ STATE of their own; a step that runs again in a new session
    (its commit did not land) reads it, the session knowing nothing."""
    from test_tsm_fakes import Crash

    pid, se = world.phone()
    assert world.tsm.run(provision(world, pid), se.transmit).state == "done"
    eng = world.tsm.engine
    for step in ("write-sign-cert", "write-auth-cert", "set-pins", "write-mdoc"):
        assert not [w for w in _step_whats(eng, pid, step) if w.endswith(" READ STATE")
                    and "+" not in w], step
    assert _step_whats(eng, pid, "issue-sign-cert") == ["STORE DATA jpki PROVE KEY sign + READ STATE"]
    assert _step_whats(eng, pid, "set-pins") == ["STORE DATA jpki SET PINS"]
    assert _step_whats(eng, pid, "issue-mdoc") == ["STORE DATA mdoc PROVE KEYS x2 + READ STATE"]

    pid, se = world.phone()
    job = provision(world, pid)

    def crash(done):
        if done == "write-sign-cert":  # before its commit: it runs again, in a new session
            raise Crash(done)

    with pytest.raises(Crash):
        world.tsm.run(job, se.transmit, after_step=crash)
    assert world.tsm.run(job, se.transmit).state == "done"
    assert "STORE DATA jpki READ STATE" in _step_whats(eng, pid, "write-sign-cert")
    check_provisioned(world, pid)
