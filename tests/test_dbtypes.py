"""UtcDateTime: the same instant back from SQLite and PostgreSQL, whatever offset went in."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from dbtypes import UtcDateTime, as_utc

JST = dt.timezone(dt.timedelta(hours=9), "JST")


@pytest.fixture
def table(db_url):
    engine = sa.create_engine(db_url)
    meta = sa.MetaData()
    t = sa.Table("times", meta, sa.Column("id", sa.Integer, primary_key=True), sa.Column("at", UtcDateTime()))
    meta.create_all(engine)
    yield engine, t
    meta.drop_all(engine)
    engine.dispose()


def test_a_jst_time_comes_back_as_the_same_instant_in_utc(table):
    engine, t = table
    noon_jst = dt.datetime(2026, 12, 4, 12, 0, tzinfo=JST)
    with engine.begin() as conn:
        conn.execute(t.insert(), [{"id": 1, "at": noon_jst},
                                  {"id": 2, "at": dt.datetime(2026, 12, 4, 3, 30)},  # naive: UTC
                                  {"id": 3, "at": None}])
        back = dict(conn.execute(sa.select(t.c.id, t.c.at)).all())
        assert back[1] == noon_jst and back[1].tzinfo is dt.UTC and back[1].hour == 3
        assert back[2] == dt.datetime(2026, 12, 4, 3, 30, tzinfo=dt.UTC) and back[3] is None
        # a comparison with a JST bound value (SQLite compares the stored text)
        later = conn.execute(sa.select(t.c.id).where(t.c.at > dt.datetime(2026, 12, 4, 12, 15, tzinfo=JST)))
        assert [r.id for r in later] == [2]
        with pytest.raises(sa.exc.StatementError, match="takes a datetime"):
            conn.execute(t.insert().values(id=4, at="2026-12-04"))


def test_postgres_in_another_session_time_zone_still_answers_utc(db_url):
    if not db_url.startswith("postgresql"):
        pytest.skip("a session time zone is PostgreSQL's")
    engine = sa.create_engine(db_url, connect_args={"options": "-c timezone=Asia/Tokyo " +
                                                    db_url.split("options=")[1].replace("%3D", "=")})
    meta = sa.MetaData()
    t = sa.Table("tz_times", meta, sa.Column("at", UtcDateTime()))
    meta.create_all(engine)
    try:
        with engine.begin() as conn:
            assert conn.execute(sa.text("show timezone")).scalar() == "Asia/Tokyo"
            conn.execute(t.insert().values(at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC)))
            back = conn.execute(sa.select(t.c.at)).scalar_one()
        assert back == dt.datetime(2026, 1, 1, tzinfo=dt.UTC) and back.tzinfo is dt.UTC
    finally:
        meta.drop_all(engine)
        engine.dispose()


@settings(max_examples=100, deadline=None)
@given(st.datetimes(timezones=st.sampled_from([dt.UTC, JST, dt.timezone(dt.timedelta(hours=-7, minutes=-30))])))
def test_as_utc_keeps_the_instant(t):
    u = as_utc(t)
    assert u == t and u.utcoffset() == dt.timedelta(0)


def test_every_issuer_and_reader_timestamp_column_is_utc():
    """A new DateTime column without UtcDateTime would bring back the nine-hour SQLite shift
    for aware non-UTC times: every timestamp of the issuer's and the reader's tables uses it."""
    import issuer.api.jobs  # noqa: F401 - registers the jobs table on the issuer's metadata
    import issuer.jpki.models  # noqa: F401
    import issuer.mdoc.models  # noqa: F401
    import reader.rp_watch  # noqa: F401 - its tables join ReaderBase's metadata
    from issuer.db import IssuerBase
    from reader.sessions import ReaderBase

    plain = [f"{table.name}.{column.name}"
             for base in (IssuerBase, ReaderBase) for table in base.metadata.tables.values()
             for column in table.columns
             if isinstance(column.type, sa.DateTime) and not isinstance(column.type, UtcDateTime)]
    stamped = [f"{table.name}.{column.name}"
               for base in (IssuerBase, ReaderBase) for table in base.metadata.tables.values()
               for column in table.columns if isinstance(column.type, UtcDateTime)]
    assert not plain, f"timestamp columns without UtcDateTime: {plain}"
    assert len(stamped) >= 20 and "reader_sessions.claimed_at" in stamped
