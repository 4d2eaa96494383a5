"""reader.crl_cache.CrlCache, the cache of fetched CRLs both the JPKI relying party and the
reader's ds_revocation use: how long an entry is kept (max_age, nextUpdate, a clock gone
back), how many (least recently used dropped), and what is never kept."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography.hazmat.primitives import hashes
from test_ca_crl import CA, KEY

from protocols import crl as ca_crl
from reader.crl_cache import CrlCache

T = dt.datetime(2026, 12, 5, 10, 0, tzinfo=dt.UTC)


def _crl(next_update=dt.timedelta(days=1)):
    return ca_crl.crl_builder(CA, number=1, this_update=T - dt.timedelta(hours=1),
                              next_update=next_update).sign(KEY, hashes.SHA256())


CRL = _crl()


class Fetch:
    def __init__(self, answer=CRL):
        self.answer, self.asked = answer, []

    def __call__(self, key):
        self.asked.append(key)
        return self.answer


def test_the_defaults_and_what_a_cache_cannot_be():
    cache = CrlCache()
    assert (cache.max_age, cache.size) == (dt.timedelta(minutes=5), 16)
    CrlCache(max_age=dt.timedelta(0), size=1)  # the smallest allowed
    for kwargs in (dict(size=0), dict(max_age=dt.timedelta(seconds=-1))):
        with pytest.raises(ValueError, match="size >= 1 and max_age >= 0"):
            CrlCache(**kwargs)


def test_an_entry_is_kept_up_to_max_age_after_the_fetch():
    cache, fetch = CrlCache(max_age=dt.timedelta(minutes=5)), Fetch()
    assert cache.get("a", T, fetch) is CRL
    assert cache.get("a", T + dt.timedelta(minutes=5), fetch) is CRL
    assert len(fetch.asked) == 1
    cache.get("a", T + dt.timedelta(minutes=5, seconds=1), fetch)
    assert len(fetch.asked) == 2 and cache.fetches == 2


def test_a_clock_gone_back_more_than_five_minutes_refetches():
    cache, fetch = CrlCache(), Fetch()
    cache.get("a", T, fetch)
    cache.get("a", T - dt.timedelta(minutes=5), fetch)
    assert len(fetch.asked) == 1
    cache.get("a", T - dt.timedelta(minutes=5, seconds=1), fetch)
    assert len(fetch.asked) == 2


def test_an_entry_is_not_kept_past_its_next_update():
    short = _crl(next_update=dt.timedelta(hours=1))  # nextUpdate = T
    cache, fetch = CrlCache(max_age=dt.timedelta(hours=2)), Fetch(short)
    cache.get("a", T - dt.timedelta(minutes=1), fetch)
    cache.get("a", T, fetch)
    assert len(fetch.asked) == 1
    cache.get("a", T + dt.timedelta(seconds=1), fetch)
    assert len(fetch.asked) == 2


def test_at_most_size_entries_the_least_recently_used_dropped_first():
    cache, fetch = CrlCache(size=2), Fetch()
    for key in ("a", "b", "a", "c"):  # "a" used again: "b" is the least recently used
        cache.get(key, T, fetch)
    assert fetch.asked == ["a", "b", "c"]
    cache.get("a", T, fetch)
    cache.get("b", T, fetch)
    assert fetch.asked == ["a", "b", "c", "b"]


def test_max_age_zero_and_failures_keep_nothing():
    nothing, fetch = CrlCache(max_age=dt.timedelta(0)), Fetch()
    nothing.get("a", T, fetch)
    nothing.get("a", T, fetch)
    assert len(fetch.asked) == 2
    cache, failing = CrlCache(), Fetch(answer="unreachable")
    assert cache.get("a", T, failing) == "unreachable" and cache.get("a", T, failing) == "unreachable"
    assert len(failing.asked) == 2 and cache.fetches == 2
    kept = CrlCache()
    kept.get("a", T, fetch)
    kept.clear()
    kept.get("a", T, fetch)
    assert len(fetch.asked) == 4


def test_a_crl_without_next_update_is_kept_no_longer_than_max_age():
    """A foreign CA's list without nextUpdate (RFC 5280 requires one) is not kept for ever:
    at most max_age after the fetch, as any other. (It cannot say "good" either:
    protocols.crl.incomplete; only its entries are believed.)"""
    from test_ca_crl import without_next_update

    undated = without_next_update(CRL, KEY)
    cache, fetch = CrlCache(max_age=dt.timedelta(minutes=5)), Fetch(undated)
    cache.get("a", T, fetch)
    assert cache.get("a", T + dt.timedelta(minutes=5), fetch) is undated and len(fetch.asked) == 1
    cache.get("a", T + dt.timedelta(minutes=5, seconds=1), fetch)
    assert len(fetch.asked) == 2
