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


def _always_walked(data: bytes):
    """The reading loads makes, walking every value whatever its size (the way it read before
    it walked only what could hold a repeated name or too deep a nesting)."""
    from protocols import json_strict as js

    js._encoding(data)
    try:
        value = json.loads(data, object_pairs_hook=js._pairs, parse_int=js._integer, parse_constant=js._constant)
    except RecursionError:
        raise JsonRefused("depth", "") from None
    except JsonRefused:
        raise
    except json.JSONDecodeError:
        raise JsonRefused("syntax", "") from None
    js._walk(value)
    return value


def _outcome(read, data: bytes):
    try:
        return ("read", read(data))
    except JsonRefused as refused:
        return (refused.kind, refused.path)


nested = st.recursive(scalars | st.just("[{"), lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.sampled_from(["a", "b", "[", "{"]), inner, max_size=3), max_leaves=40)


@settings(max_examples=300, deadline=None)
@given(nested, st.integers(0, 70), st.booleans())
def test_the_shortcut_reads_as_a_full_walk_does(value, depth, repeat):
    """loads walks a value only when some name came twice or the text has more brackets
    than MAX_DEPTH: the outcome (the value, or the refusal's kind and path) is the one a walk
    of every value gives, around and past the depth bound, with brackets inside strings."""
    text = json.dumps(value, ensure_ascii=False)
    if repeat:
        text = '{"k": 1, "k": ' + text + "}"
    data = ("[" * depth + text + "]" * depth).encode()
    assert _outcome(loads, data) == _outcome(_always_walked, data)


def test_integers_past_the_bound_are_refused_with_pythons_limit_switched_off():
    import sys

    before = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        try:
            loads(b"[" + b"7" * 5000 + b"]")
        except JsonRefused as refused:
            assert refused.kind == "integer" and "5000 digits" in refused.detail
        else:
            raise AssertionError("a 5000-digit integer was read")
    finally:
        sys.set_int_max_str_digits(before)
