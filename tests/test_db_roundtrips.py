"""The database round trips of one provision, counted as the database sees them
(``mcred.db_trips``, which ``python -m benchmarks provision`` reports), held under a bound
on SQLite and on PostgreSQL; and the ping that replaced ``pool_pre_ping``: a connection
that sat idle is checked, one returned moments ago is not.

The bounds are counts, not times: a change that adds round trips to provisioning fails
here and says which kinds grew. On PostgreSQL a steady-state provision sent 232 round
trips before this test existed (39 pre-pings, 39 BEGIN, 35 COMMIT, 4 ROLLBACK, 3
DEALLOCATE ALL, statements and prepares)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import PG_URL

import mcred.db
import wallet_sim
from mcred.context import Context
from mcred.db import make_engine
from mcred.db_trips import RoundTrips, describe
from mcred.provision import issuer_port, parse_holder, provision

#: round trips of one steady-state P-384 provision with one mdoc, psycopg's prepares aside
#: (165 on PostgreSQL, 227 statements run on SQLite when the bound was set)
BOUND = {"postgresql": 170, "sqlite": 232}


def _holder(i: int) -> dict:
    return {"family_name": "往復", "given_name": f"太郎{i}", "family_name_kana": "オウフク",
            "given_name_kana": "タロウ", "birth_date": "1980-04-01", "sex": 1,
            "address": f"東京都千代田区{i}-1", "prefecture": "東京都", "municipality": "千代田区"}


def _counted_provisions(home: Path, url: str, warmup: int, runs: int) -> list[Counter[str]]:
    ctx = Context(home=home, database=url)
    trips = RoundTrips(ctx.engine)
    ctx.engine.dispose()  # every connection from here on is counted
    issuer_port(ctx)
    counts = []
    try:
        for i in range(warmup + runs):
            before = trips.snapshot()
            provision(ctx, wallet_sim.create_phone(home), parse_holder(_holder(i)),
                      key_type="p384", mdoc_batch=1, pin="1234", password="ABC123",
                      puk="12345678")
            if i >= warmup:
                counts.append(trips.since(before))
    finally:
        trips.detach()
        ctx.engine.dispose()
    return counts


def test_one_provision_stays_within_its_round_trips(home: Path, db_url: str):
    counts = _counted_provisions(home, db_url, warmup=2, runs=2)
    dialect = "sqlite" if db_url.startswith("sqlite") else "postgresql"
    for c in counts:
        seen = describe(c)
        assert c["statement"] > 50 and c["commit"] > 10, seen  # counted at all
        # psycopg prepares a statement after its 5th run on a connection: one round trip
        # once per connection, however many provisions follow (none in a steady state)
        assert c.total() - c["prepare"] <= BOUND[dialect], seen
        # no read ends in ROLLBACK (on PostgreSQL psycopg then drops its prepared
        # statements: DEALLOCATE ALL, and they are prepared again)
        assert c["rollback"] == 0 and c["deallocate"] == 0, seen
        # connections checked out moments after their return are not pinged
        assert c["ping"] == 0, seen
        # every transaction begun is committed (pysqlite begins at the first write only)
        assert c["begin"] == c["commit"], seen


@pytest.fixture
def pg_url(db_url: str) -> str:
    if db_url.startswith("sqlite"):
        pytest.skip("a server's connections and libpq's trace: PostgreSQL only")
    return db_url


def _backend_pid(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        conn.commit()
    return pid


def _terminate(pid: int) -> None:
    admin = sa.create_engine(PG_URL)
    try:
        with admin.begin() as conn:
            assert conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()
            # the backend is gone once pg_stat_activity no longer lists it
            for _ in range(200):
                if not conn.execute(sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = :p"),
                                    {"p": pid}).scalar():
                    break
    finally:
        admin.dispose()


def test_a_connection_dropped_while_idle_is_replaced_before_use(pg_url: str, monkeypatch):
    monkeypatch.setattr(mcred.db, "PING_AFTER_IDLE_S", 0.0)  # every idle connection is old
    engine = make_engine(pg_url, pool_size=1, max_overflow=0)
    try:
        first = _backend_pid(engine)
        _terminate(first)  # a server restart, an idle timeout: the pooled connection is dead
        assert _backend_pid(engine) != first  # pinged, found dead, replaced: no error
    finally:
        engine.dispose()


def test_a_connection_returned_moments_ago_is_not_pinged(pg_url: str, monkeypatch):
    monkeypatch.setattr(mcred.db, "PING_AFTER_IDLE_S", 3600.0)
    engine = make_engine(pg_url, pool_size=1, max_overflow=0)
    trips = RoundTrips(engine)
    try:
        first = _backend_pid(engine)
        before = trips.snapshot()
        assert _backend_pid(engine) == first
        assert trips.since(before)["ping"] == 0
        # dropped within that window, the connection fails its first statement once (the
        # caller sees the error, as for a statement in flight when the server went away),
        # and SQLAlchemy replaces it: the next checkout works
        _terminate(first)
        with pytest.raises(sa.exc.DBAPIError) as err:
            _backend_pid(engine)
        assert err.value.connection_invalidated
        assert _backend_pid(engine) != first
    finally:
        trips.detach()
        engine.dispose()


def test_the_counter_tells_each_kind_apart(pg_url: str, monkeypatch):
    # the bound above is only as good as the count: each kind it forbids is seen when sent
    monkeypatch.setattr(mcred.db, "PING_AFTER_IDLE_S", 0.0)
    engine = make_engine(pg_url, pool_size=1, max_overflow=0)
    trips = RoundTrips(engine)
    try:
        _backend_pid(engine)  # connect (no ping: just opened), BEGIN, SELECT, COMMIT
        first = trips.snapshot()
        assert (first["begin"], first["statement"], first["commit"], first["ping"]) == (1, 1, 1, 0)
        before = trips.snapshot()
        with engine.connect() as conn:  # idle past the limit: pinged
            for i in range(6):  # psycopg prepares it at the 5th run: one round trip more
                conn.execute(sa.text("SELECT :i"), {"i": i})
            conn.rollback()  # a prepared statement and a ROLLBACK: DEALLOCATE ALL follows
        got = trips.since(before)
        assert got == {"ping": 1, "begin": 1, "statement": 6, "prepare": 1, "rollback": 1,
                       "deallocate": 1}, describe(got)
        # the ping (psycopg's, in autocommit) opens no transaction: nothing to roll back
        before = trips.snapshot()
        with engine.connect():
            pass
        assert trips.since(before) == {"ping": 1}
    finally:
        trips.detach()
        engine.dispose()
