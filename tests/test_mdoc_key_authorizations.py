"""deviceKeyInfo.keyAuthorizations enforced by the core verifier (ISO/IEC 18013-5:2021 §9.1.2.4),
so every verifier gets it, not only the reader pipeline."""

from __future__ import annotations

import pytest
from test_mdoc_issuing import NS, device_key, issue, pki, transcript, verify  # noqa: F401

from protocols import cose, mdoc

OTHER = "jp.example.other"


def respond(pki, device_key, *, auth, signed):  # noqa: F811
    st = transcript()
    isg = issue(pki, device_key, key_authorizations=auth)
    ds = mdoc.build_device_signed("org.iso.18013.5.1.mDL", st, signer=cose.key_signer(device_key),
                                  device_name_spaces=signed)
    return verify(pki, mdoc.DeviceResponse((mdoc.Document("org.iso.18013.5.1.mDL", isg, ds),)).encode(), st)


@pytest.mark.parametrize(("auth", "signed"), [
    ({"dataElements": {NS: ["nickname"]}}, {NS: {"nickname": "ハナ"}}),
    ({"nameSpaces": [NS]}, {NS: {"nickname": "ハナ", "family_name": "X"}}),
    ({"nameSpaces": [OTHER], "dataElements": {NS: ["a", "b"]}}, {NS: {"b": 1}, OTHER: {"z": 2}}),
    ({"nameSpaces": [NS]}, None),
])
def test_authorized_device_signed_elements_pass(pki, device_key, auth, signed):  # noqa: F811
    result = respond(pki, device_key, auth=auth, signed=signed)
    assert result.valid, result.to_json()
    assert [c.name for c in result.checks].count("key_authorizations") == 1
    n = sum(map(len, (signed or {}).values()))
    assert result.check("key_authorizations").reason.endswith(f"{n} device-signed element(s) authorized")


@pytest.mark.parametrize(("auth", "signed", "why"), [
    ({"dataElements": {NS: ["nickname"]}}, {NS: {"family_name": "X"}}, "family_name not authorized"),
    ({"nameSpaces": [OTHER]}, {NS: {"nickname": "X"}}, "nickname not authorized"),
    (None, {NS: {"nickname": "X"}}, "no keyAuthorizations"),
    # an empty namespace beside it does not make the device-signed element go unnoticed
    (None, {OTHER: {}, NS: {"nickname": "X"}}, "no keyAuthorizations"),
    ({"dataElements": {NS: "nickname"}}, {NS: {"nickname": "X"}}, "malformed"),
    ({"nameSpaces": [NS], "other": 1}, {NS: {"nickname": "X"}}, "malformed"),
    # a namespace given as one tstr, not an array: "in" on a string is a substring test, so
    # without the shape check NS would authorize every element of NS (and of "org.iso")
    ({"nameSpaces": NS}, {NS: {"nickname": "X"}}, "malformed"),
    ({"nameSpaces": [1]}, {NS: {"nickname": "X"}}, "malformed"),
    # dataElements as an array, not a map: refused by name, not an AttributeError in the verifier
    ({"dataElements": ["nickname"]}, {NS: {"nickname": "X"}}, "malformed"),
])
def test_unauthorized_device_signed_elements_fail_by_name(pki, device_key, auth, signed, why):  # noqa: F811
    result = respond(pki, device_key, auth=auth, signed=signed)
    assert result.failed() == ["key_authorizations"]
    # one verdict on the device key's authorizations: a refusal is not followed by a pass
    assert [c.name for c in result.checks].count("key_authorizations") == 1
    assert why in result.check("key_authorizations").reason
    assert result.documents == ()


def test_nothing_declared_nothing_signed_adds_no_check(pki, device_key):  # noqa: F811
    result = respond(pki, device_key, auth=None, signed=None)
    assert result.valid
    assert result.check("key_authorizations") is None


def test_only_empty_device_namespaces_need_no_key_authorizations(pki, device_key):  # noqa: F811
    """DeviceNameSpaces with a namespace but no element in it: something device-signed
    (DeviceNameSpaces is not the empty map), yet no element to authorize: passed, said so."""
    result = respond(pki, device_key, auth=None, signed={NS: {}})
    assert result.valid, result.to_json()
    assert [c.name for c in result.checks].count("key_authorizations") == 1
    assert result.check("key_authorizations").reason.endswith("nothing device-signed, no keyAuthorizations")


def test_unreadable_device_namespaces_handed_over_in_code_are_refused_by_name(pki, device_key):  # noqa: F811
    """A DeviceResponse built in code (not decoded: decoding refuses it) whose
    DeviceNameSpacesBytes are not a map, signed by the device key all the same:
    key_authorizations fails as malformed, no exception."""
    st = transcript()
    ns_bytes = b"\x01"
    signature = cose.Sign1.create(cose.key_signer(device_key), None,
                                  detached=mdoc.device_authentication_bytes(st, "org.iso.18013.5.1.mDL", ns_bytes))
    signed = mdoc.DeviceSigned(ns_bytes, mdoc.DeviceAuth(device_signature=signature))
    isg = issue(pki, device_key, key_authorizations={"nameSpaces": [NS]})
    response = mdoc.DeviceResponse((mdoc.Document("org.iso.18013.5.1.mDL", isg, signed),))
    result = verify(pki, response, st)
    assert result.failed() == ["key_authorizations"]
    assert result.check("key_authorizations").code == "malformed"
    assert "DeviceNameSpaces unreadable" in result.check("key_authorizations").reason
