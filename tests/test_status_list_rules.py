"""StatusList (protocols.status.bitlist) refusing what it must, at its edges: each test holds
a rule that a mutation of the module could otherwise drop without any test failing (the
draft's examples and the round trips are tests/test_status_list.py)."""

from __future__ import annotations

import zlib

import pytest

from protocols.status import (
    StatusIndexError,
    StatusList,
    StatusListDecodeError,
    StatusListTooLargeError,
    StatusValueError,
)
from protocols.status.bitlist import DEFAULT_MAX_LIST_BYTES, SMALL_LIST_BYTES


@pytest.mark.parametrize("bits", [0, 3, 16, True, 1.0, "1", None])
def test_only_1_2_4_or_8_bits_an_entry(bits):
    for make in (lambda: StatusList(bits, b"\x00"), lambda: StatusList.empty(8, bits),
                 lambda: StatusList.from_statuses([0], bits), lambda: StatusList.from_indices(8, [1], bits=bits),
                 lambda: StatusList.decompress(zlib.compress(b"\x00"), bits)):
        with pytest.raises(StatusValueError, match="bits must be one of"):
            make()


def test_the_byte_array_must_be_bytes():
    with pytest.raises(StatusListDecodeError, match="raw must be bytes, got bytearray"):
        StatusList(1, bytearray(2))


@pytest.mark.parametrize("size", [-1, True, 8.0, "8"])
def test_a_size_is_a_non_negative_int(size):
    with pytest.raises(StatusValueError, match="size must be a non-negative int"):
        StatusList.empty(size)


def test_the_defaults_and_the_smallest_list():
    assert StatusList.empty(0).raw == b"" and len(StatusList.empty(0)) == 0
    assert StatusList.empty(9).bits == 1 and StatusList.from_statuses([1, 0, 1]).bits == 1
    assert StatusList.from_indices(9, [8]).bits == 1


@pytest.mark.parametrize("bits", [1, 2, 4])
def test_a_status_wider_than_its_bits_or_not_an_int_is_refused_everywhere(bits):
    """A status that does not fit would spill into the next entries (another credential's)."""
    too_wide = 1 << bits
    lst = StatusList.empty(8, bits)
    for make in (lambda: StatusList.from_statuses([0, too_wide], bits),
                 lambda: StatusList.from_indices(8, [1], status=too_wide, bits=bits),
                 lambda: lst.updated({1: too_wide}), lambda: lst.indices_with(too_wide),
                 lambda: StatusList.from_statuses([True], bits), lambda: StatusList.from_statuses([-1], bits),
                 lambda: StatusList.from_statuses(["1"], bits), lambda: StatusList.from_statuses([1.0], bits)):
        with pytest.raises(StatusValueError, match="does not fit"):
            make()


def test_indices_out_of_range_are_refused_for_a_valid_status_too():
    with pytest.raises(StatusIndexError):
        StatusList.from_indices(8, [3, 8], status=0)
    with pytest.raises(StatusIndexError):
        StatusList.empty(8).updated({8: 1})


def test_small_lists_compress_at_level_9_and_larger_ones_with_run_length():
    """The draft's examples are reproduced byte for byte because lists of at most 16 KiB are
    compressed at level 9 with the default strategy; one byte more switches to Z_RLE."""
    assert SMALL_LIST_BYTES == 16 * 1024
    raw = bytes(range(256)) * (SMALL_LIST_BYTES // 256)
    assert StatusList(1, raw).compress() == zlib.compress(raw, 9)
    bigger = raw + b"\x01"
    rle = zlib.compressobj(9, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
    assert StatusList(1, bigger).compress() == rle.compress(bigger) + rle.flush() != zlib.compress(bigger, 9)


def test_a_list_inflating_to_max_bytes_is_read_and_one_byte_more_is_refused():
    assert DEFAULT_MAX_LIST_BYTES == 32 * 1024 * 1024
    assert len(StatusList.decompress(zlib.compress(bytes(1000)), 1, max_bytes=1000).raw) == 1000
    with pytest.raises(StatusListTooLargeError):
        StatusList.decompress(zlib.compress(bytes(1001)), 1, max_bytes=1000)
    at_the_limit = zlib.compress(bytes(DEFAULT_MAX_LIST_BYTES), 9)
    assert len(StatusList.decompress(at_the_limit, 8).raw) == DEFAULT_MAX_LIST_BYTES
    with pytest.raises(StatusListTooLargeError):
        StatusList.decompress(zlib.compress(bytes(DEFAULT_MAX_LIST_BYTES + 1), 9), 8)


def test_lst_must_be_a_byte_string():
    for lst in ("eNrbWQIAAsoBOA", [120, 156], None):
        with pytest.raises(StatusListDecodeError, match="lst must be a byte string"):
            StatusList.decompress(lst, 1)
    raw = b"\xb9\xa3"
    assert StatusList.decompress(memoryview(zlib.compress(raw)), 1).raw == raw


@pytest.mark.parametrize("indices", [["1"], [1, "a"], [True], [2, 1.0], iter([3, None])])
def test_indices_that_are_not_ints_are_an_index_error_on_the_fast_path(indices):
    """from_indices ORs a non-VALID status in a tight loop and checks the indices only when
    the smallest is not a non-negative int: anything else is a StatusIndexError, never a
    TypeError from comparing it with 0."""
    with pytest.raises(StatusIndexError, match="index must be an int"):
        StatusList.from_indices(8, indices, status=1)
