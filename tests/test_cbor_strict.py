"""protocols.cbor: deterministic encoding, strict decoding, tag 24, tdate / full-date."""

from __future__ import annotations

import datetime as dt

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import cbor

SETTINGS = settings(max_examples=200, deadline=None)


def test_canonical_map_order_is_length_first():
    # RFC 7049 §3.9: shorter encoded keys first, then bytewise
    assert cbor.dumps({"bb": 1, "a": 2, 10: 3, -1: 4}) == bytes.fromhex("a40a03200461610262626201")


def test_duplicate_map_keys_are_refused():
    # cbor2 accepts duplicates by default; a verifier must not
    assert cbor2.loads(bytes.fromhex("a201010102")) == {1: 2}
    with pytest.raises(cbor.CborDecodeError, match="Duplicate"):
        cbor.loads(bytes.fromhex("a201010102"))


def test_nested_duplicate_keys_are_refused():
    with pytest.raises(cbor.CborDecodeError):
        cbor.loads(bytes.fromhex("81a2616101616102"))


def test_trailing_bytes_are_refused():
    assert cbor2.loads(bytes.fromhex("0102")) == 1  # cbor2 alone ignores them
    with pytest.raises(cbor.CborDecodeError, match="trailing"):
        cbor.loads(bytes.fromhex("0102"))


def test_empty_and_truncated_input():
    for data in (b"", bytes.fromhex("82 01".replace(" ", "")), bytes.fromhex("5820aa")):
        with pytest.raises(cbor.CborDecodeError):
            cbor.loads(data)


def test_arrays_decode_as_lists():
    assert cbor.loads(bytes.fromhex("820102")) == [1, 2]
    assert isinstance(cbor.loads(bytes.fromhex("820102")), list)


def test_tdate_is_utc_z_without_fractions():
    t = dt.datetime(2020, 10, 1, 22, 30, 2, 123456, tzinfo=dt.timezone(dt.timedelta(hours=9)))
    assert cbor.tdate(t) == cbor2.CBORTag(0, "2020-10-01T13:30:02Z")
    assert cbor.dumps(t) == cbor.dumps(cbor2.CBORTag(0, "2020-10-01T13:30:02Z"))
    with pytest.raises(cbor.CborEncodeError):
        cbor.tdate(dt.datetime(2020, 1, 1))  # naive


def test_full_date_is_tag_1004():
    d = dt.date(2019, 10, 20)
    assert cbor.full_date(d) == cbor2.CBORTag(1004, "2019-10-20")
    assert cbor.dumps(d) == bytes.fromhex("d903ec6a323031392d31302d3230")
    assert cbor.loads(cbor.dumps(d)) == d


def test_embed_unembed_keeps_exact_bytes():
    # a non-canonical inner encoding (map keys out of order) survives unembed untouched
    inner = bytes.fromhex("a2616202616101")
    outer = cbor2.dumps(cbor2.CBORTag(24, inner))
    raw, value = cbor.unembed(cbor.loads(outer))
    assert raw == inner and value == {"a": 1, "b": 2}
    assert cbor.unembed(outer)[0] == inner
    assert cbor.embed({"a": 1}) == cbor2.CBORTag(24, cbor.dumps({"a": 1}))


@pytest.mark.parametrize(
    "value", [cbor2.CBORTag(25, b"\xa0"), cbor2.CBORTag(24, "a0"), b"\xa0", 3, cbor2.CBORTag(24, b"\xff")]
)
def test_unembed_refuses_anything_else(value):
    with pytest.raises(cbor.CborDecodeError):
        cbor.unembed(value if not isinstance(value, bytes) else cbor2.CBORTag(1, value))


_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64 - 1) | st.text(max_size=20)
    | st.binary(max_size=20) | st.floats(allow_nan=False),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=5) | st.integers(-100, 100), children, max_size=5),
    max_leaves=20,
)


@SETTINGS
@given(_values)
def test_round_trip(value):
    data = cbor.dumps(value)
    assert cbor.loads(data) == value
    assert cbor.dumps(cbor.loads(data)) == data


@SETTINGS
@given(st.binary(max_size=64))
def test_arbitrary_bytes_give_cbor_error_or_a_value(data):
    try:
        cbor.loads(data)
    except cbor.CborDecodeError:
        pass


@SETTINGS
@given(st.binary(max_size=64))
def test_unembed_arbitrary_bytes(data):
    try:
        cbor.unembed(cbor2.CBORTag(24, data))
    except cbor.CborDecodeError:
        pass
