"""Status List value (draft-ietf-oauth-status-list section 4): the draft's examples byte for
byte, set/get against a plain reference, compression, the bomb guard, index allocation."""

from __future__ import annotations

import random
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.status import (
    Status,
    StatusIndexError,
    StatusList,
    StatusListDecodeError,
    StatusListError,
    StatusListFullError,
    StatusListTooLargeError,
    StatusValueError,
    allocate_index,
)

EX1 = [1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 1, 0, 1]
EX2 = [1, 2, 0, 3, 0, 1, 0, 1, 1, 2, 3, 3]


def test_draft_example_one_bit():
    lst = StatusList.from_statuses(EX1, bits=1)
    assert lst.raw.hex() == "b9a3"
    assert lst.compress().hex() == "78dadbb918000217015d"
    back = StatusList.decompress(bytes.fromhex("78dadbb918000217015d"), 1)
    assert [back.get(i) for i in range(16)] == EX1


def test_draft_example_two_bits():
    lst = StatusList.from_statuses(EX2, bits=2)
    assert lst.raw.hex() == "c944f9"
    assert lst.compress().hex() == "78da3be9f2130003df0207"
    back = StatusList.decompress(bytes.fromhex("78da3be9f2130003df0207"), 2)
    assert [back.get(i) for i in range(12)] == EX2


def reference_get(raw: bytes, bits: int, index: int) -> int:
    """Plain reading of section 4.1: entry i at bit offset i*bits, LSB first."""
    bit = index * bits
    return sum(((raw[(bit + k) // 8] >> ((bit + k) % 8)) & 1) << k for k in range(bits))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([1, 2, 4, 8]).flatmap(
    lambda bits: st.tuples(st.just(bits), st.lists(st.integers(0, 2**bits - 1), max_size=80),
                           st.lists(st.tuples(st.integers(0, 200), st.integers(0, 2**bits - 1)),
                                    max_size=20))))
def test_set_get_agree_with_reference(case):
    bits, initial, updates = case
    size = max(len(initial), 1) + 8
    expected = initial + [0] * (size - len(initial))
    lst = StatusList.from_statuses(expected, bits)
    for index, status in updates:
        index %= len(lst)
        lst = lst.set(index, status)
        while len(expected) <= index:
            expected.append(0)
        expected[index] = status
    expected += [0] * (len(lst) - len(expected))
    assert [lst.get(i) for i in range(len(lst))] == expected
    assert [reference_get(lst.raw, bits, i) for i in range(len(lst))] == expected
    again = StatusList.decompress(lst.compress(), bits)
    assert again == lst


@settings(max_examples=100, deadline=None)
@given(st.sampled_from([1, 2]), st.sets(st.integers(0, 999), max_size=200))
def test_from_indices_matches_set(bits, indices):
    fast = StatusList.from_indices(1000, indices, Status.INVALID, bits)
    slow = StatusList.empty(1000, bits).updated({i: Status.INVALID for i in indices})
    assert fast == slow
    assert fast.indices_with(Status.INVALID) == sorted(indices)


def test_sizes_round_up_and_bounds():
    assert len(StatusList.empty(10, 1)) == 16
    assert len(StatusList.empty(10, 2)) == 12
    lst = StatusList.empty(8, 1)
    for bad in (-1, 8, 1.0, "1"):
        with pytest.raises(StatusIndexError):
            lst.get(bad)
    with pytest.raises(StatusIndexError):
        StatusList.from_indices(8, [3, 8])
    with pytest.raises(StatusIndexError):
        StatusList.from_indices(8, [-1])
    with pytest.raises(StatusValueError):
        lst.set(0, 2)
    with pytest.raises(StatusValueError):
        StatusList.empty(8, 3)
    assert StatusList.from_indices(8, iter([1, 1, 7])).indices_with(1) == [1, 7]


def test_updated_clears_and_suspends():
    lst = StatusList.from_statuses([3, 3, 3, 3], 2)
    lst = lst.updated({0: Status.VALID, 2: Status.SUSPENDED})
    assert [lst.get(i) for i in range(4)] == [0, 3, 2, 3]


def test_large_sparse_list_uses_rle_and_stays_near_level_9():
    rng = random.Random(5)
    size = 2_000_000
    lst = StatusList.from_indices(size, rng.sample(range(size), size // 100))
    lst_bytes = lst.compress()
    level9 = zlib.compress(lst.raw, 9)
    assert len(lst_bytes) <= 1.2 * len(level9)
    assert StatusList.decompress(lst_bytes, 1) == lst


def test_decompression_bomb_is_refused():
    bomb = zlib.compress(bytes(10_000_000), 9)
    assert len(bomb) < 20_000
    with pytest.raises(StatusListTooLargeError):
        StatusList.decompress(bomb, 1, max_bytes=1_000_000)
    assert len(StatusList.decompress(bomb, 1, max_bytes=10_000_000)) == 80_000_000


def test_malformed_lst():
    good = StatusList.from_statuses(EX1).compress()
    for bad, what in ((good[:-2], "truncated"), (good + b"x", "after the end"),
                      (b"\x00\x01", "ZLIB"), (zlib.compress(b"ab")[2:], "ZLIB")):
        with pytest.raises(StatusListDecodeError, match=what):
            StatusList.decompress(bad, 1)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64), st.sampled_from([0, 1, 2, 3, 4, 8, 16]))
def test_fuzzed_lst_gives_status_list_error_only(data, bits):
    try:
        StatusList.decompress(data, bits)
    except StatusListError:
        pass


def test_allocation_is_random_unique_and_bounded():
    rng = random.Random(7)
    used: set[int] = set()
    for _ in range(750):
        index = allocate_index(1000, used, rng)
        assert 0 <= index < 1000 and index not in used
        used.add(index)
    with pytest.raises(StatusListFullError):
        allocate_index(1000, used, rng)
    assert sorted(used) != list(range(750))  # not handed out in order
    assert allocate_index(1000, used, rng, max_fill=1.0) not in used
    with pytest.raises(StatusValueError):
        allocate_index(0, set(), rng)


def test_allocation_is_uniform_over_free_indices():
    rng = random.Random(3)
    used = set(range(0, 100, 2))
    counts = {}
    for _ in range(5000):
        i = allocate_index(100, used, rng)
        counts[i] = counts.get(i, 0) + 1
    assert set(counts) == set(range(1, 100, 2))
    assert min(counts.values()) > 50  # ~100 each
