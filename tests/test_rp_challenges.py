"""The relying party's challenge stores (reader.rp_auth): a challenge is taken back once,
before it expires; a second answer is named a replay; an unknown or malformed id is simply
unknown (no database error on PostgreSQL); of racing answers exactly one wins. The memory
store and the SQL store (SQLite and PostgreSQL) behave alike."""

from __future__ import annotations

import datetime as dt
import threading

import pytest

from reader.rp_auth import MAX_CHALLENGES, ChallengeRefused, MemoryChallengeStore, SqlChallengeStore

T0 = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(params=["memory", "sql"])
def store(request, db_url):
    if request.param == "memory":
        return MemoryChallengeStore()
    from mcred.db import make_engine, migrate

    engine = make_engine(db_url)
    migrate(engine, "reader@head")  # the reader's own tables, as `mcred reader serve --db` does
    request.addfinalizer(engine.dispose)
    return SqlChallengeStore(engine)


def test_taken_back_once_before_it_expires(store):
    a, b = store.issue(T0), store.issue(T0)
    assert a.id != b.id and a.nonce != b.nonce and len(a.nonce) == 32
    assert a.expires_at == T0 + dt.timedelta(minutes=2)
    assert store.take(a.id, T0 + dt.timedelta(seconds=5)) == a.nonce
    with pytest.raises(ChallengeRefused, match="already answered"):
        store.take(a.id, T0 + dt.timedelta(seconds=6))
    with pytest.raises(ChallengeRefused, match="unknown or expired"):
        store.take(b.id, T0 + dt.timedelta(minutes=2))  # at its expiry: too late
    for bad in ("0" * 32, "A" * 32, "x\x00", "f" * 5000, ""):
        with pytest.raises(ChallengeRefused, match="unknown or expired"):
            store.take(bad, T0)


def test_of_racing_answers_exactly_one_wins(store):
    c = store.issue(T0)
    won, refused = [], []
    start = threading.Barrier(8)

    def answer() -> None:
        start.wait()
        try:
            won.append(store.take(c.id, T0 + dt.timedelta(seconds=1)))
        except ChallengeRefused as exc:
            refused.append(str(exc))

    threads = [threading.Thread(target=answer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert won == [c.nonce] and len(refused) == 7


def test_a_store_is_bounded(store):
    store.max_challenges = 3
    first = store.issue(T0)
    later = [store.issue(T0 + dt.timedelta(microseconds=i)) for i in range(1, 4)]
    with pytest.raises(ChallengeRefused, match="unknown"):
        store.take(first.id, T0)  # dropped, oldest first
    assert [store.take(c.id, T0) for c in later] == [c.nonce for c in later]
    assert MAX_CHALLENGES >= 1000
