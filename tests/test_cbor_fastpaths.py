"""The fast paths of protocols.cbor give exactly what the general paths give.

dumps skips cbor2's custom-encoder / canonical machinery when it cannot matter;
loads_many decodes several items in one pass; unembed reads a plain tag-24 head by hand.
Each is checked against the path it replaces, bytes for bytes and error for error.
"""

from __future__ import annotations

import datetime as dt

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import cbor

SETTINGS = settings(max_examples=200, deadline=None)

_scalars = (
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.text(max_size=8)
    | st.binary(max_size=8) | st.floats(allow_nan=False, width=32) | st.dates()
    | st.datetimes(timezones=st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=9)), None]))
)
_keys = st.integers(-30, 30) | st.text(max_size=4) | st.dates() | st.binary(max_size=3)
values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
    | st.dictionaries(_keys, inner, max_size=4) | st.builds(cbor2.CBORTag, st.integers(40000, 40010), inner),
    max_leaves=12,
)


def _reference_dumps(obj, canonical):
    """The general path alone (what dumps did before its fast path)."""
    try:
        return cbor2.dumps(obj, canonical=canonical, encoders=cbor._ENCODERS)
    except cbor.CborError as exc:
        return type(exc)
    except (cbor2.CBORError, TypeError, ValueError, OverflowError, RecursionError):
        return cbor.CborEncodeError


def _ours(obj, canonical):
    try:
        return cbor.dumps(obj, canonical=canonical)
    except cbor.CborError as exc:
        return type(exc)


@SETTINGS
@given(values, st.booleans())
def test_dumps_fast_path_equals_general_path(obj, canonical):
    assert _ours(obj, canonical) == _reference_dumps(obj, canonical)


def test_dumps_keeps_a_date_key_and_its_tag_apart():
    obj = {dt.date(2020, 1, 1): 1, cbor.full_date(dt.date(2020, 1, 1)): 2}
    assert cbor.dumps(obj, canonical=False) == _reference_dumps(obj, False)


def test_dumps_refuses_naive_datetime():
    with pytest.raises(cbor.CborEncodeError):
        cbor.dumps({"t": dt.datetime(2020, 1, 1)})


@SETTINGS
@given(st.datetimes(min_value=dt.datetime(1, 1, 2), timezones=st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=-5))])))
def test_tdate_text_equals_strftime(value):
    u = value.astimezone(dt.UTC)  # strftime's %Y does not pad years before 1000: RFC 3339's 4DIGIT does
    assert cbor.tdate_text(value) == f"{u.year:04d}" + u.strftime("-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize("value", [dt.datetime(1, 1, 1, tzinfo=dt.UTC), dt.datetime(999, 12, 31, 23, 59, 59, tzinfo=dt.UTC),
                                   dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC)])
def test_a_tdate_before_the_year_1000_survives_its_round_trip(value):
    """dumps wrote year 999 as "999-12-31T23:59:59Z", which loads (strict RFC 3339: four
    digits of year) refused: an MSO signed with such a time could not be read back by any
    reader, ours included. Found by the deep fuzz campaign (a re-signed MSO)."""
    data = cbor.dumps({"t": value})
    assert cbor.loads(data) == {"t": value}
    assert cbor.tdate_text(value)[:4] == f"{value.year:04d}"


def _each(parts):
    out = []
    for p in parts:
        try:
            out.append(("ok", cbor.loads(p)))
        except cbor.CborDecodeError as exc:
            out.append(("err", str(exc)))
    return out


def _many(parts):
    try:
        return ("ok", cbor.loads_many(parts))
    except cbor.CborDecodeError as exc:
        return ("err", str(exc))


def _expected(parts):
    each = _each(parts)
    first_err = next((e for e in each if e[0] == "err"), None)
    return first_err if first_err else ("ok", [v for _, v in each])




def _encoded_or_garbage():
    def enc(v):
        try:
            return cbor2.dumps(v, encoders=cbor._ENCODERS)
        except Exception:  # noqa: BLE001
            return b"\xff"
    return values.map(enc) | st.binary(max_size=12)


@SETTINGS
@given(st.lists(_encoded_or_garbage(), max_size=5), st.data())
def test_loads_many_equals_loads_one_by_one(parts, data):
    if len(parts) >= 2 and data.draw(st.booleans()):  # move bytes across a boundary
        cut = data.draw(st.integers(0, len(parts[0])))
        parts = [parts[0][:cut], parts[0][cut:] + parts[1], *parts[2:]]
    assert _many(parts) == _expected(parts)


@pytest.mark.parametrize(
    "parts",
    [
        [b"\x01\x02", b"\x03"],  # trailing byte in the first, which would start the next
        [b"\xa1\x01", b"\x02"],  # an item split across two parts
        [b"", b"\x01"],  # an empty part
        [b"\xd8\x1c\x01", b"\xd8\x1d\x00"],  # a shared reference to another part's value
        [b"\xa2\x01\x01\x01\x02"],  # duplicate key
    ],
)
def test_loads_many_refuses_what_loads_refuses(parts):
    assert _many(parts) == _expected(parts)
    assert _many(parts)[0] == "err"


@SETTINGS
@given(st.binary(max_size=40), st.sampled_from([b"", b"\x00", b"\x00\x00"]))
def test_unembed_fast_path_equals_general_path(inner, junk):
    for data in (cbor.tag24_bytes(inner) + junk, cbor2.dumps(cbor2.CBORTag(24, inner)) + junk,
                 b"\xd8\x18\x58" + bytes([len(inner)]) + inner, b"\xd8\x18\x5f" + cbor2.dumps(inner) + b"\xff"):
        def general(d=data):
            try:
                value = cbor.loads(d)
                if not isinstance(value, cbor2.CBORTag) or value.tag != 24 or not isinstance(value.value, bytes):
                    return "shape"
                return value.value, cbor.loads(value.value)
            except cbor.CborDecodeError:
                return "err"

        try:
            got = cbor.unembed(data)
        except cbor.CborDecodeError:
            got = "shape" if general() == "shape" else "err"
        assert got == general()
