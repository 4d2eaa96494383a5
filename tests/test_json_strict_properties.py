"""protocols.json_strict fuzzed (hypothesis): whatever the bytes, a JSON body is read or
refused with a JsonRefused naming a kind, never another exception; a JSON value without
repeated names, within the depth and integer bounds, reads back as itself; and a member
name written twice anywhere is found, with its path."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.json_strict import MAX_DEPTH, JsonRefused, loads

KINDS = {"encoding", "syntax", "duplicate", "depth", "integer", "constant"}

scalars = st.none() | st.booleans() | st.integers(-(10**30), 10**30) | st.text(max_size=20) | st.floats(
    allow_nan=False, allow_infinity=False)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_are_read_or_refused_by_kind(data):
    try:
        loads(data)
    except JsonRefused as refused:
        assert refused.kind in KINDS and refused.detail


@settings(max_examples=300, deadline=None)
@given(values)
def test_a_plain_value_reads_back_as_itself(value):
    assert loads(json.dumps(value, ensure_ascii=False).encode()) == value


@settings(max_examples=200, deadline=None)
@given(values, st.lists(st.text(max_size=5), max_size=5), st.text(max_size=8))
def test_a_name_written_twice_anywhere_is_found_with_its_path(value, where, name):
    inner = json.dumps({name: 1}, ensure_ascii=False)[1:-1]
    text = "{" + inner + ", " + inner + ', "v": ' + json.dumps(value, ensure_ascii=False) + "}"
    for key in reversed(where):  # the repeated object nested under these names
        text = "{" + json.dumps(key, ensure_ascii=False) + ": " + text + "}"
    try:
        loads(text.encode())
    except JsonRefused as refused:
        assert refused.kind == "duplicate" and refused.path == (*where, name), (refused.kind, refused.path)
    else:
        raise AssertionError("a repeated name was read")


def test_depth_and_digits_bounds():
    deep = b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1)
    try:
        loads(deep)
    except JsonRefused as refused:
        assert refused.kind == "depth"
    else:
        raise AssertionError("nesting past MAX_DEPTH was read")
    assert loads(b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1)) is not None
    try:
        loads(b"1" * 5000)
    except JsonRefused as refused:
        assert refused.kind == "integer"
    else:
        raise AssertionError("a 5000-digit integer was read")
