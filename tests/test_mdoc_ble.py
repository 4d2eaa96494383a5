"""Data retrieval over BLE, the pure part (ISO/IEC 18013-5:2021 §8.3.3.1.1, protocols.mdoc.ble):
the BLE options of Annex D's engagement, the characteristic-value framing for any ATT MTU,
Ident, and hostile input that only ever gives a BleError / MdocDecodeError."""

from __future__ import annotations

import hashlib
import hmac
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_mdoc_vectors import hexv

from protocols import cbor
from protocols.mdoc import DeviceEngagement, MdocDecodeError, ble


def annex_d_engagement() -> DeviceEngagement:
    return DeviceEngagement.decode(hexv("device_engagement_qr"))


def test_annex_d_engagement_offers_central_client_mode_with_its_uuid():
    de = annex_d_engagement()
    options = ble.BleOptions.of(de)
    assert options == ble.BleOptions(False, True, None, uuid.UUID("45efef74-2b2c-4837-a9a3-b0e1d05a6917"))
    assert options.modes() == [ble.CENTRAL_CLIENT]
    # written back, the method is the one the engagement carries, byte for byte
    assert cbor.dumps(options.retrieval_method()) == cbor.dumps(de.retrieval_methods[0])
    with pytest.raises(ble.BleError, match="does not offer mdoc peripheral server mode"):
        options.uuid_for(ble.PERIPHERAL_SERVER)


def test_characteristic_uuids_are_the_standards():
    assert str(ble.PERIPHERAL_SERVER.state).upper() == "00000001-A123-48CE-896B-4C76973373E6"
    assert str(ble.PERIPHERAL_SERVER.server2client).upper().startswith("00000003-")
    assert ble.PERIPHERAL_SERVER.ident is None
    assert str(ble.CENTRAL_CLIENT.client2server).upper().startswith("00000006-")
    assert str(ble.CENTRAL_CLIENT.ident).upper() == "00000008-A123-48CE-896B-4C76973373E6"


def test_ident_is_hkdf_over_the_tagged_edevicekeybytes():
    key_bytes = annex_d_engagement().e_device_key_bytes
    # RFC 5869 by hand with the standard library: salt empty, info "BLEIdent", 16 bytes
    ikm = b"\xd8\x18" + cbor.dumps(key_bytes)  # #6.24(bstr .cbor EDeviceKey)
    prk = hmac.new(b"", ikm, hashlib.sha256).digest()
    okm = hmac.new(prk, b"BLEIdent\x01", hashlib.sha256).digest()[:16]
    assert ble.ident(key_bytes) == okm
    assert len(okm) == 16 and ble.ident(key_bytes + b"\x00") != okm


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=1, max_size=3000), st.integers(min_value=23, max_value=600))
def test_fragments_fit_the_mtu_and_join_back(message, mtu):
    size = ble.value_size(mtu)
    values = ble.fragments(message, size)
    assert all(2 <= len(v) <= size for v in values) and size <= 512
    assert [v[0] for v in values] == [1] * (len(values) - 1) + [0]
    assert len(values) == -(-len(message) // (size - 1))
    joined = ble.Reassembler()
    assert [joined.feed(v) for v in values] == [None] * (len(values) - 1) + [message]
    assert joined.pending == 0


def test_the_framing_refuses_what_the_standard_does_not_allow():
    r = ble.Reassembler(max_message=10)
    with pytest.raises(ble.BleError, match="empty characteristic value"):
        r.feed(b"")
    with pytest.raises(ble.BleError, match="starts with 0x02"):
        r.feed(b"\x02abc")
    with pytest.raises(ble.BleError, match="empty session message"):
        r.feed(b"\x00")
    with pytest.raises(ble.BleError, match="longer than 10 bytes"):
        r.feed(b"\x01" + bytes(6)) or r.feed(b"\x01" + bytes(6))
    with pytest.raises(ble.BleError, match="cannot be empty"):
        ble.fragments(b"", 20)
    with pytest.raises(ble.BleError, match="at least 23"):
        ble.value_size(22)
    assert ble.value_size(23) == 20 and ble.value_size(517) == 512 and ble.value_size(1000) == 512
    assert ble.state_value(b"\x01") == "start" and ble.state_value(b"\x02") == "end"
    with pytest.raises(ble.BleError, match="01 \\(start\\) or 02 \\(end\\)"):
        ble.state_value(b"\x03")


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=20))
def test_any_values_give_messages_or_a_ble_error(values):
    r = ble.Reassembler(max_message=100)
    for v in values:
        try:
            got = r.feed(v)
        except ble.BleError:
            r = ble.Reassembler(max_message=100)
            continue
        assert got is None or (isinstance(got, bytes) and 0 < len(got) <= 100)


_values = st.one_of(st.booleans(), st.integers(), st.binary(max_size=20), st.text(max_size=5), st.none())


@settings(max_examples=200, deadline=None)
@given(st.one_of(_values, st.dictionaries(st.sampled_from([0, 1, 10, 11, 20, 21, "x"]), _values, max_size=6)))
def test_any_ble_options_decode_or_name_the_problem(m):
    try:
        options = ble.BleOptions.from_map(m)
    except MdocDecodeError as exc:
        assert str(exc).startswith("BleOptions")
        return
    assert ble.BleOptions.from_map(options.to_map()) == options
    for mode in (ble.PERIPHERAL_SERVER, ble.CENTRAL_CLIENT):
        try:
            assert isinstance(options.uuid_for(mode), uuid.UUID)
        except ble.BleError as exc:
            assert "mdoc" in str(exc)


def test_new_options_have_a_fresh_uuid_per_mode_and_a_bad_version_is_refused():
    a, b = ble.BleOptions.new(peripheral=True, central=True), ble.BleOptions.new()
    assert a.peripheral_uuid != b.peripheral_uuid and a.central_uuid is not None and b.central_uuid is None
    assert a.modes() == [ble.PERIPHERAL_SERVER, ble.CENTRAL_CLIENT]
    with pytest.raises(ValueError):
        ble.BleOptions.new(peripheral=False, central=False)
    key = annex_d_engagement().e_device_key
    de = DeviceEngagement.build(key, retrieval_methods=[[2, 2, a.to_map()]])
    with pytest.raises(MdocDecodeError, match="unsupported version 2"):
        ble.BleOptions.of(de)
    assert ble.BleOptions.of(DeviceEngagement.build(key)) is None
    assert ble.BleOptions.of(DeviceEngagement.build(key, retrieval_methods=[[1, 1, {}], b.retrieval_method()])) == b
