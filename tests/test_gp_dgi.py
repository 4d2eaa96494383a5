"""DGI records (GPCS 2.3.1 11.11.3.1): the one codec the TSM and the applets share."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.gp.dgi import Dgi, encode, parse_all
from protocols.gp.errors import DgiError


def test_short_and_long_length_forms():
    assert encode(0x0101, b"\x01\x02") == bytes.fromhex("0101020102")
    long = encode(0x0103, bytes(300))
    assert long[:5] == bytes.fromhex("0103ff012c") and len(long) == 305
    assert encode(0x0200, bytes(0xFE))[2] == 0xFE
    assert encode(0x0200, bytes(0xFF))[2:5] == bytes.fromhex("ff00ff")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 0xFFFF), st.binary(max_size=600)), max_size=5))
def test_round_trip(records):
    stream = b"".join(encode(t, v) for t, v in records)
    assert parse_all(stream) == tuple(Dgi(t, v) for t, v in records)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_arbitrary_streams_give_records_or_dgi_error(data):
    try:
        parse_all(data)
    except DgiError:
        pass


def test_refusals_name_the_problem():
    with pytest.raises(DgiError, match="header truncated"):
        parse_all(b"\x01")
    with pytest.raises(DgiError, match="needs 5 bytes"):
        parse_all(bytes.fromhex("010105aabb"))
    with pytest.raises(DgiError, match="exceeds 65535"):
        encode(0x0101, bytes(0x10000))
