"""Status-list index allocation: random, never reused, safe under concurrency (both backends)."""

from __future__ import annotations

import datetime as dt
import random
import threading
from collections import Counter

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker

from issuer.db import Credential, Holder, Phone, StatusList
from issuer.mdoc.status_lists import StatusListPolicy, StatusRegistry, period_of
from issuer.mdoc.txn import run_transaction
from mcred.db import make_engine, migrate

NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def sessions(db_url):
    engine = make_engine(db_url, pool_size=20) if not db_url.startswith("sqlite") else make_engine(db_url)
    migrate(engine)
    factory = sessionmaker(engine, expire_on_commit=False)
    with factory.begin() as s:
        h = Holder(id="h1", data={}, card_number="0000111122223333", card_expiry=dt.date(2035, 1, 1))
        s.add(h)
        s.add(Phone(id="p1", holder_id="h1"))
    yield factory
    engine.dispose()


def _row(lst, idx) -> Credential:
    return Credential(holder_id="h1", phone_id="p1", kind="mdoc", issuer_key="ds-test",
                      not_before=NOW, not_after=NOW, body=b"x")


def test_period_names():
    assert period_of(NOW, "month") == "2026-11"
    assert period_of(NOW, "day") == "2026-11-23"
    assert period_of(NOW, "week") == "2026-W48"
    assert period_of(NOW, "year") == "2026"


def test_policy_refuses_one_bit_and_bad_sizes():
    with pytest.raises(ValueError):
        StatusListPolicy(bits=1)
    with pytest.raises(ValueError):
        StatusListPolicy(size=3)
    with pytest.raises(ValueError):
        StatusListPolicy(ttl=10, lifetime=5)


def test_allocation_is_random_not_sequential(sessions):
    reg = StatusRegistry("http://issuer.test", StatusListPolicy(size=1 << 12), rng=random.Random(7))
    creds = [run_transaction(sessions, lambda s: reg.allocate(s, NOW, _row)) for _ in range(20)]
    idxs = [c.status_idx for c in creds]
    assert len(set(idxs)) == 20
    assert idxs != sorted(idxs)
    assert len({c.status_list_id for c in creds}) == 1
    with sessions() as s:
        lst = s.get(StatusList, creds[0].status_list_id)
        assert lst.uri == f"http://issuer.test/status/{lst.id}"
        assert lst.allocated == 20 and lst.period == "2026-11" and lst.bits == 2


def test_full_list_opens_a_new_one_and_periods_do_not_mix(sessions):
    reg = StatusRegistry("http://issuer.test", StatusListPolicy(size=8, max_fill=0.5))
    creds = [run_transaction(sessions, lambda s: reg.allocate(s, NOW, _row)) for _ in range(9)]
    per_list = Counter(c.status_list_id for c in creds)
    assert sorted(per_list.values()) == [1, 4, 4]
    later = NOW + dt.timedelta(days=10)
    c = run_transaction(sessions, lambda s: reg.allocate(s, later, _row))
    with sessions() as s:
        assert s.get(StatusList, c.status_list_id).period == "2026-12"


def _allocate_concurrently(sessions, threads: int, per_thread: int, registry) -> None:
    """``threads`` workers start together, each allocating ``per_thread`` indices from the
    registry ``registry()`` gives it; any exception in a worker fails the test."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads)

    def worker() -> None:
        reg = registry()
        try:
            barrier.wait()
            for _ in range(per_thread):
                run_transaction(sessions, lambda s: reg.allocate(s, NOW, _row))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert not errors, errors


def test_concurrent_allocations_end_with_unique_indices(sessions):
    reg = StatusRegistry("http://issuer.test", StatusListPolicy(size=64, max_fill=0.75))
    threads, per_thread = 8, 20
    _allocate_concurrently(sessions, threads, per_thread, lambda: reg)
    with sessions() as s:
        pairs = s.execute(select(Credential.status_list_id, Credential.status_idx)).all()
        assert len(pairs) == threads * per_thread
        assert len(set(pairs)) == len(pairs)
        for lst in s.scalars(select(StatusList)):
            n = s.scalar(select(func.count()).where(Credential.status_list_id == lst.id))
            assert lst.allocated in (n, lst.size)  # exact count, or closed when it filled
            assert all(0 <= i < lst.size for lid, i in pairs if lid == lst.id)


def test_concurrent_allocators_with_identical_random_draws_still_never_share(sessions):
    """Worst case: every thread draws the same index sequence, so they collide on purpose."""
    threads, per_thread = 6, 10
    _allocate_concurrently(
        sessions, threads, per_thread,
        lambda: StatusRegistry("http://issuer.test", StatusListPolicy(size=256),
                               rng=random.Random(1234)))
    with sessions() as s:
        pairs = s.execute(select(Credential.status_list_id, Credential.status_idx)).all()
    assert len(pairs) == threads * per_thread == len(set(pairs))
