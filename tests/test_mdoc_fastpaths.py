"""The hand-written encoders of the hot paths give exactly the general encoder's bytes:
IssuerSignedItem.create, the MSO, Sig_structure, DeviceAuthenticationBytes, the protected
header and cbor.tstr. Bounded hypothesis runs."""

from __future__ import annotations

import datetime as dt

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import cbor, cose
from protocols.cose._headers import encode_protected
from protocols.mdoc import _parse as p
from protocols.mdoc import mso as mso_mod
from protocols.mdoc import transcript as tr
from protocols.mdoc.issuer_signed import IssuerSignedItem

SETTINGS = settings(max_examples=150, deadline=None)
KEYS = {c: cose.CoseKey.from_public_key(ec.generate_private_key(c()).public_key())
        for c in (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)}

aware = st.datetimes(min_value=dt.datetime(1000, 1, 1), max_value=dt.datetime(9999, 1, 1),
                     timezones=st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=9))]))
#: A signing time from which a validity of up to 903 days still ends in year 9999 at most.
signing_times = st.datetimes(min_value=dt.datetime(1000, 1, 1), max_value=dt.datetime(9996, 1, 1),
                             timezones=st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=9))]))
scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=20)
           | st.binary(max_size=40) | st.dates() | aware | st.floats(allow_nan=False))
values = st.recursive(scalars, lambda i: st.lists(i, max_size=3) | st.dictionaries(st.text(max_size=3), i, max_size=3),
                      max_leaves=6)


@SETTINGS
@given(st.integers(0, 2**64 - 1), st.binary(min_size=16, max_size=40), st.text(max_size=30), values)
def test_issuer_signed_item_create_equals_general_encoding(digest_id, random, ident, value):
    general = p.encode({"digestID": digest_id, "random": random, "elementIdentifier": ident, "elementValue": value})
    assert IssuerSignedItem.create(digest_id, random, ident, value).raw == general


digests = st.dictionaries(st.text(max_size=12), st.dictionaries(st.integers(0, 2**40), st.binary(max_size=64),
                                                                min_size=1, max_size=5), max_size=3)


@SETTINGS
@given(digests, st.sampled_from(list(KEYS)), st.text(max_size=20), aware, aware, aware, st.none() | aware,
       st.none() | st.builds(mso_mod.MsoStatus, st.builds(mso_mod.StatusListRef, st.integers(0, 2**31), st.text(max_size=9))),
       st.none() | st.just({"nameSpaces": ["a"]}))
def test_mso_fast_encoding_equals_general_encoding(vd, curve, doc_type, t1, t2, t3, t4, status, auth):
    mso = mso_mod.MobileSecurityObject("SHA-256", vd, mso_mod.DeviceKeyInfo(KEYS[curve], auth), doc_type,
                                       mso_mod.ValidityInfo(t1, t2, t3, t4), status=status)
    assert mso_mod._encode_fast(mso) == p.encode(mso.to_map())
    assert mso_mod.MobileSecurityObject.decode(mso.to_bytes()).value_digests == vd


def test_mso_with_a_naive_time_takes_the_general_path_and_its_error():
    mso = mso_mod.MobileSecurityObject("SHA-256", {}, mso_mod.DeviceKeyInfo(KEYS[ec.SECP256R1]), "d",
                                       mso_mod.ValidityInfo(dt.datetime(2020, 1, 1), dt.datetime(2020, 1, 1),
                                                            dt.datetime(2021, 1, 1)))
    assert mso_mod._encode_fast(mso) is None


@pytest.mark.parametrize("edit", [
    {"value_digests": {1: {0: bytes(32)}}}, {"value_digests": {"ns": {True: bytes(32)}}},
    {"value_digests": {"ns": {-1: bytes(32)}}}, {"value_digests": {"ns": {0: "digest"}}},
    {"value_digests": {"ns": ((0, bytes(32)),)}}, {"version": 1}, {"digest_algorithm": -16}, {"doc_type": 5},
    {"value_digests": {"ns": dict.fromkeys((23, 24, 0xFFFF, 0x10000, 0xFFFFFFFF, 2**32, 2**64 - 1), bytes(32))}},
    {"status": mso_mod.MsoStatus(mso_mod.StatusListRef(-1, "u"))},
    {"status": mso_mod.MsoStatus(mso_mod.StatusListRef(True, "u"))},
    {"status": mso_mod.MsoStatus(mso_mod.StatusListRef(2**64, "u"))},
    {"status": mso_mod.MsoStatus(mso_mod.StatusListRef(1, "u"), mso_mod.IdentifierListRef(b"\x01", "v"))},
    {"status": mso_mod.MsoStatus()},
    {"device_key_info": mso_mod.DeviceKeyInfo(KEYS[ec.SECP256R1], key_info={1: 2})},
])
def test_mso_shapes_the_fast_encoder_does_not_write_get_the_general_encoding(edit):
    """Hand-built MSOs outside what issuing makes (a non-text namespace, a digestID that is
    a bool or negative, a digest that is no bstr, a non-text version, algorithm or docType,
    a status idx that is no uint64, a status_list beside an identifier_list, or neither, a keyInfo)
    are written by the general encoder, byte for byte, never by the fast path's heads
    (which would drop a reference, write other bytes or crash); digestIDs at each head
    size's bounds too, written in the shortest head (RFC 8949 4.2.1)."""
    t = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    fields = dict(digest_algorithm="SHA-256", value_digests={"ns": {0: bytes(32)}},
                  device_key_info=mso_mod.DeviceKeyInfo(KEYS[ec.SECP256R1]), doc_type="d",
                  validity_info=mso_mod.ValidityInfo(t, t, t + dt.timedelta(days=1)))
    mso = mso_mod.MobileSecurityObject(**{**fields, **edit})
    assert mso.to_bytes() == cbor.tag24_bytes(p.encode(mso.to_map()))


@SETTINGS
@given(st.binary(max_size=300), st.binary(max_size=30), st.binary(max_size=70000))
def test_sig_structure_equals_encoder(protected, aad, payload):
    assert cose.sig_structure(protected, aad, payload) == cbor.dumps(["Signature1", protected, aad, payload])


@SETTINGS
@given(st.binary(min_size=1, max_size=300), st.text(max_size=40), st.binary(max_size=400))
def test_device_authentication_bytes_equal_general_assembly(raw, doc_type, ns_bytes):
    st_ = tr.SessionTranscript(raw, None, None, None)
    general = tr._embed_raw_array([cbor.dumps("DeviceAuthentication"), raw, cbor.dumps(doc_type),
                                   cbor.dumps(cbor.CBORTag(24, ns_bytes))])
    assert tr.device_authentication_bytes(st_, doc_type, ns_bytes) == general


@SETTINGS
@given(st.text(max_size=100))
def test_tstr_equals_encoder(text):
    assert cbor.tstr(text) == cbor.tstr(text) == cbor2.dumps(text)


def test_protected_alg_header_equals_encoder():
    for alg in (-7, -35, -36, 5, -8):
        assert encode_protected({1: alg}) == cbor.dumps({1: alg})
    assert encode_protected({}) == b""
    assert encode_protected({1: -7, 4: b"k"}) == cbor.dumps({1: -7, 4: b"k"})


def test_created_item_is_an_ordinary_frozen_dataclass_instance():
    import dataclasses

    import pytest

    made = IssuerSignedItem.create(70000, bytes(16), "family_name", "山田")
    plain = IssuerSignedItem(70000, bytes(16), "family_name", "山田", made.raw)
    assert made == plain and hash(made) == hash(plain) and repr(made) == repr(plain)
    assert dataclasses.asdict(made) == dataclasses.asdict(plain)
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.digest_id = 1  # type: ignore[misc]


def test_verifier_checks_are_ordinary_frozen_dataclass_instances():
    import dataclasses

    import pytest

    from protocols.mdoc import Check

    made, plain = Check._of("value_digests", True, "r"), Check("value_digests", True, "r")
    assert made == plain and hash(made) == hash(plain) and repr(made) == repr(plain)
    assert made.to_json() == plain.to_json()
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.passed = False  # type: ignore[misc]


class _SeededRng:
    """A deterministic stand-in for secrets.token_bytes (both paths must draw alike)."""

    def __init__(self, seed: int) -> None:
        import random

        self._r = random.Random(seed)

    def __call__(self, n: int) -> bytes:
        return self._r.randbytes(n)


class _HashSigner:
    """Deterministic: the 'signature' is a hash of the ToBeSigned bytes, so equal output
    proves equal Sig_structure (and so equal MSO bytes)."""

    alg = -7

    def sign(self, tbs: bytes) -> bytes:
        import hashlib

        return hashlib.sha512(tbs).digest()


DEVICE_KEYS = {c: ec.generate_private_key(c()).public_key() for c in (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)}
element_values = values | st.just(bytes(300)) | st.text(min_size=200, max_size=300) | st.integers(0, 2**16)
issued_namespaces = st.dictionaries(st.text(max_size=12), st.dictionaries(st.text(max_size=20), element_values,
                                                                         min_size=1, max_size=5), min_size=1, max_size=3)
statuses = st.none() | st.builds(mso_mod.MsoStatus, st.builds(mso_mod.StatusListRef, st.integers(0, 2**40), st.text(max_size=9)),
                                 st.none() | st.builds(mso_mod.IdentifierListRef, st.binary(max_size=8), st.text(max_size=9)))


@SETTINGS
@given(issued_namespaces, st.text(max_size=20), st.sampled_from(list(DEVICE_KEYS)), signing_times,
       st.timedeltas(dt.timedelta(0), dt.timedelta(days=3)),
       st.timedeltas(dt.timedelta(seconds=1), dt.timedelta(days=900)), st.none() | aware, statuses,
       st.sampled_from(["SHA-256", "SHA-384", "SHA-512"]), st.integers(0, 2**32), st.integers(1, 3))
def test_issuing_fast_path_equals_general_path(namespaces, doc_type, curve, signed, to_start, to_end, expected_update,
                                               status, digest_alg, seed, chain_len):
    from protocols.mdoc import issuing

    valid_from = signed + to_start
    valid_until = valid_from + to_end
    chain = [bytes([i]) * 40 for i in range(chain_len)]
    args = (namespaces, doc_type, DEVICE_KEYS[curve], _HashSigner(), chain, valid_from, valid_until)
    kw = dict(signed=signed, expected_update=expected_update, status=status, digest_alg=digest_alg)
    general = issuing._build_general(*args, **kw, rng=_SeededRng(seed))
    fast = issuing._build_fast(namespaces, doc_type, DEVICE_KEYS[curve], _HashSigner(), chain, signed, valid_from,
                               valid_until, expected_update, status, digest_alg, _SeededRng(seed))
    assert fast is not None
    assert fast.encode() == general.encode()
    assert fast.name_spaces == general.name_spaces
    assert issuing.build_issuer_signed(*args, **kw, rng=_SeededRng(seed)).encode() == general.encode()
    prepared = issuing.prepare_namespaces(namespaces)  # the elements encoded once for a batch
    for _ in range(2):
        again = issuing.build_issuer_signed(prepared, *args[1:], **kw, rng=_SeededRng(seed))
        assert again.encode() == general.encode() and again.name_spaces == general.name_spaces


def test_issuing_fast_path_with_short_digest_ids_equals_general_path():
    """digestIDs below 0x10000 (a namespace in a few thousand draws one) have shorter heads
    than the prepared prefixes assume: the fast path writes them all the same."""
    import struct

    from protocols.mdoc import issuing

    class SmallIds:
        def __call__(self, n: int) -> bytes:
            count = n // 20
            return struct.pack(f">{count}I", *(2 * i + 7 for i in range(count - 1)), 0x30000) + bytes(range(16 * count))

    key = DEVICE_KEYS[ec.SECP256R1]
    t = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    elements = {"ns": {"a": 1, "b": "x" * 300, "c": dt.date(2030, 1, 2)}, "n2": {"d": True}}
    args = (elements, "d", key, _HashSigner(), [b"ds"], t, t + dt.timedelta(days=1))
    general = issuing._build_general(*args, rng=SmallIds())
    for ns in (elements, issuing.prepare_namespaces(elements)):
        fast = issuing._build_fast(ns, "d", key, _HashSigner(), [b"ds"], t, t, t + dt.timedelta(days=1), None, None,
                                   "SHA-256", SmallIds())
        assert fast.encode() == general.encode()
    assert min(i.digest_id for i in general.items()["ns"]) < 0x10000


@pytest.mark.parametrize("micro", [0, 1, 999_999])
@pytest.mark.parametrize("until", [dt.timedelta(0), dt.timedelta(microseconds=1), dt.timedelta(microseconds=-1),
                                   dt.timedelta(seconds=-1), dt.timedelta(days=1)])
def test_default_signed_time_orders_like_the_general_path(micro, until):
    """``signed`` left out (it is valid_from): the same MSO, or the same typed error, as the
    general path, around the fraction of a second that the order check cuts."""
    from protocols.mdoc import IssuingError, issuing

    key = DEVICE_KEYS[ec.SECP256R1]
    valid_from = dt.datetime(2026, 1, 1, 9, 30, 5, micro, tzinfo=dt.UTC)
    args = ({"ns": {"a": 1}}, "d", key, _HashSigner(), [b"ds"], valid_from, valid_from + until)
    try:
        general = issuing._build_general(*args, rng=_SeededRng(5)).encode()
    except IssuingError as exc:
        general = type(exc)
    try:
        made = issuing.build_issuer_signed(*args, rng=_SeededRng(5)).encode()
    except IssuingError as exc:
        made = type(exc)
    assert made == general


def test_prepared_namespaces_take_the_general_path_and_its_errors_where_the_mapping_does():
    import pytest

    from protocols.mdoc import IssuingError, issuing

    key = DEVICE_KEYS[ec.SECP256R1]
    t = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    elements = {"ns": {"a": 1, "b": "x", "c": dt.date(2030, 1, 2)}}
    prepared = issuing.prepare_namespaces(elements)
    auth = {"nameSpaces": ["ns"]}  # keyAuthorizations: written by the general path only
    for ns in (elements, prepared):
        made = issuing.build_issuer_signed(ns, "d", key, _HashSigner(), [b"ds"], t, t + dt.timedelta(days=1),
                                           key_authorizations=auth, rng=_SeededRng(3))
        assert made.encode() == issuing._build_general(elements, "d", key, _HashSigner(), [b"ds"], t,
                                                       t + dt.timedelta(days=1), key_authorizations=auth,
                                                       rng=_SeededRng(3)).encode()
        with pytest.raises(IssuingError, match="aware"):  # a naive time: the general path's typed error
            issuing.build_issuer_signed(ns, "d", key, _HashSigner(), [b"ds"], t.replace(tzinfo=None),
                                        t + dt.timedelta(days=1), rng=_SeededRng(3))
    for bad in ({"ns": {}}, {b"ns": {"a": 1}}):  # shapes the fast path does not write
        with pytest.raises(IssuingError):
            issuing.build_issuer_signed(issuing.prepare_namespaces(bad), "d", key, _HashSigner(), [b"ds"], t,
                                        t + dt.timedelta(days=1))
    from protocols.mdoc.errors import MdocEncodeError

    with pytest.raises(MdocEncodeError):  # an element the encoder refuses: refused when prepared
        issuing.prepare_namespaces({"ns": {"a": object()}})


def test_issuing_fast_path_declines_what_it_does_not_write():
    from protocols.mdoc import issuing

    key = DEVICE_KEYS[ec.SECP256R1]
    t = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    common = (key, _HashSigner(), [b"ds"], t, t, t + dt.timedelta(days=1), None, None, "SHA-256", _SeededRng(1))
    assert issuing._build_fast({"ns": {1: "not a text identifier"}}, "d", *common) is None
    assert issuing._build_fast({"ns": {}}, "d", *common) is None
    assert issuing._build_fast({b"ns": {"a": 1}}, "d", *common) is None
    ok = issuing._build_fast({"ns": {"a": 1}}, "d", *common)
    assert ok is not None and ok.mso().doc_type == "d"


def test_decoded_objects_are_ordinary_frozen_dataclass_instances():
    import dataclasses

    import pytest

    from protocols import mdoc

    key = ec.generate_private_key(ec.SECP256R1())
    t = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    issued = mdoc.build_issuer_signed({"ns": {"a": 1, "b": "x"}}, "d", key.public_key(), cose.key_signer(key), [b"ds"],
                                      t, t + dt.timedelta(days=1),
                                      status=mdoc.MsoStatus(mdoc.StatusListRef(7, "https://s")))
    e_key = cose.CoseKey.from_public_key(key.public_key())
    st_ = mdoc.SessionTranscript.build(b"\xa0", e_key, None)
    doc = mdoc.build_document(issued, st_, signer=cose.key_signer(key))
    decoded = mdoc.DeviceResponse.decode(mdoc.DeviceResponse((doc,)).encode())
    d = decoded.documents[0]
    mso = d.issuer_signed.mso()
    assert mso.status.status_list.idx == 7
    for made in (decoded, d, d.issuer_signed, d.issuer_signed.issuer_auth, d.device_signed, d.device_signed.device_auth,
                 mso, mso.validity_info, mso.device_key_info, mso.device_key_info.device_key, mso.status,
                 mso.status.status_list):
        plain = dataclasses.replace(made)  # through __init__ (and __post_init__)
        assert made == plain and repr(made) == repr(plain)
        with pytest.raises(dataclasses.FrozenInstanceError):
            made.x = 1  # type: ignore[attr-defined]
    for hashable in (d.issuer_signed.issuer_auth, mso.validity_info, mso.device_key_info, mso.status):
        assert hash(hashable) == hash(dataclasses.replace(hashable))
    assert decoded.encode() == mdoc.DeviceResponse((doc,)).encode()


# -- DeviceResponse.decode: the one-pass usual shape and the general path ----------------------

def _sample_response_value():
    from protocols import mdoc

    key = ec.generate_private_key(ec.SECP256R1())
    t = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    issued = mdoc.build_issuer_signed({"ns": {"a": 1, "b": "x"}, "ns2": {"c": b"y"}}, "d", key.public_key(),
                                      cose.key_signer(key), [b"ds"], t, t + dt.timedelta(days=1))
    st_ = mdoc.SessionTranscript.build(b"\xa0", cose.CoseKey.from_public_key(key.public_key()), None)
    doc = mdoc.build_document(issued, st_, signer=cose.key_signer(key))
    return cbor.loads(mdoc.DeviceResponse((doc, doc)).encode())


_RESPONSE_VALUE = _sample_response_value()
_REPLACEMENTS = (st.none() | st.booleans() | st.integers(-3, 30) | st.text(max_size=4) | st.binary(max_size=4)
                 | st.just([]) | st.just({}) | st.just(b"\xa0") | st.builds(cbor.CBORTag, st.sampled_from([24, 18, 1004]),
                                                                       st.sampled_from([b"\xa0", b"\xa1", "x", 1]))
                 | st.sampled_from(["1.0", "2.0", "version", "errors", "nameSpaces", "deviceMac", 1, -7]))


def _paths(value, path=()):
    yield path
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, (*path, i))
    elif isinstance(value, cbor.CBORTag):
        yield from _paths(value.value, (*path, "<tag>"))


def _copy(value):
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    if isinstance(value, cbor.CBORTag):
        return cbor.CBORTag(value.tag, _copy(value.value))
    return value


_ALL_PATHS = list(_paths(_RESPONSE_VALUE))


@settings(max_examples=600, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_ALL_PATHS), st.sampled_from(["replace", "delete", "add key"]),
                          _REPLACEMENTS), max_size=3))
def test_usual_response_decode_equals_general_decode(edits):
    """Any edit of the decoded DeviceResponse (a field replaced, removed, or a key added):
    DeviceResponse.decode, with its one-pass usual shape, gives what the general path gives
    (equal objects, equal device-signed name spaces) or raises the same error."""
    from protocols import mdoc
    from protocols.mdoc.response import DeviceResponse

    value = _copy(_RESPONSE_VALUE)
    for path, how, new in edits:
        parent, ok = None, True
        node = value
        for step in path:
            parent = node
            try:
                node = node.value if step == "<tag>" else node[step]
            except (KeyError, IndexError, TypeError, AttributeError):
                ok = False
                break
        if not ok or not path:
            continue
        last = path[-1]
        if not isinstance(parent, dict | list):
            continue
        if how == "replace":
            parent[last] = new
        elif how == "delete":
            del parent[last]
        elif isinstance(node, dict) and isinstance(new, str | int):
            node[new] = 0
    try:
        data = cbor.dumps(value, canonical=False)
    except cbor.CborError:
        return

    def outcome(fn):
        try:
            r = fn()
        except mdoc.MdocError as exc:
            return type(exc).__name__, str(exc)
        return r, [d.device_signed.name_spaces() for d in r.documents]

    general = outcome(lambda: DeviceResponse._decode(p.load(data, "DeviceResponse")))
    assert outcome(lambda: DeviceResponse.decode(data)) == general


def test_usual_response_decode_takes_the_one_pass_path():
    from protocols.mdoc import response

    calls = []
    original = response.Document.from_cbor
    response.Document.from_cbor = classmethod(lambda cls, *a, **k: calls.append(1) or original(*a, **k))
    try:
        decoded = response.DeviceResponse.decode(cbor.dumps(_RESPONSE_VALUE, canonical=False))
    finally:
        response.Document.from_cbor = original
    assert calls == [] and len(decoded.documents) == 2
    assert decoded == response.DeviceResponse._decode(_RESPONSE_VALUE)


def test_issuing_fast_path_with_a_repeated_digest_id_draws_again_like_the_general_path():
    """Two equal 31-bit IDs in a namespace's pool: both paths draw a replacement from rng
    (4 bytes, after the pool) and write the same bytes."""
    import struct

    from protocols.mdoc import issuing

    class RepeatedIds:
        def __init__(self) -> None:
            self.calls: list[int] = []

        def __call__(self, n: int) -> bytes:
            self.calls.append(n)
            if n == 4:  # the replacement ID
                return struct.pack(">I", 0x7654321 << 1)
            count = n // 20
            words = [(0x123456 + i) << 1 for i in range(count - 1)] + [0x123456 << 1 | 1]  # last >> 1 == first
            return struct.pack(f">{count}I", *words) + bytes(range(16 * count))

    key = DEVICE_KEYS[ec.SECP256R1]
    t = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    elements = {"ns": {"a": 1, "b": "x", "c": dt.date(2030, 1, 2)}, "n2": {"d": True}}
    general_rng, fast_rng = RepeatedIds(), RepeatedIds()
    general = issuing._build_general(elements, "d", key, _HashSigner(), [b"ds"], t, t + dt.timedelta(days=1),
                                     rng=general_rng)
    fast = issuing._build_fast(issuing.prepare_namespaces(elements), "d", key, _HashSigner(), [b"ds"], t, t,
                               t + dt.timedelta(days=1), None, None, "SHA-256", fast_rng)
    assert fast.encode() == general.encode() and fast.name_spaces == general.name_spaces
    assert fast_rng.calls == general_rng.calls == [60, 4, 20]
    assert 0x7654321 in {i.digest_id for i in general.items()["ns"]}


@settings(max_examples=40, deadline=None)
@given(issued_namespaces, st.sampled_from(list(DEVICE_KEYS)), aware, statuses,
       st.sampled_from(["SHA-256", "SHA-384", "SHA-512"]), st.integers(0, 2**32))
def test_issuing_with_a_cose_key_device_key_equals_the_ec_key(namespaces, curve, signed, status, digest_alg, seed):
    """The device key as its CoseKey (the point the issuer already holds): the one-pass path
    writes it without serialising the key, and gives the EC key's bytes."""
    from protocols.mdoc import issuing

    until = signed + dt.timedelta(days=30)
    point = cose.CoseKey.from_public_key(DEVICE_KEYS[curve])
    kw = dict(signed=signed, status=status, digest_alg=digest_alg)
    general = issuing._build_general(namespaces, "d", DEVICE_KEYS[curve], _HashSigner(), [b"ds"], signed, until,
                                     **kw, rng=_SeededRng(seed)).encode()
    fast = issuing._build_fast(namespaces, "d", point, _HashSigner(), [b"ds"], signed, signed, until, None, status,
                               digest_alg, _SeededRng(seed))
    assert fast is not None and fast.encode() == general
    for ns in (namespaces, issuing.prepare_namespaces(namespaces)):
        made = issuing.build_issuer_signed(ns, "d", point, _HashSigner(), [b"ds"], signed, until, **kw,
                                           rng=_SeededRng(seed))
        assert made.encode() == general
        assert made.mso().device_key_info.device_key == point


@SETTINGS
@given(st.dictionaries(st.text(max_size=12), st.lists(st.binary(max_size=300), max_size=4).map(tuple) | st.lists(
           st.binary(max_size=30), max_size=2), max_size=3),
       st.binary(max_size=20), st.sampled_from([{}, {33: b"ds"}, {33: bytes(300)}, {33: [b"a", b"b"]}, {4: b"k"},
                                                {33: b"ds", 4: b"k"}]),
       st.binary(max_size=400), st.binary(max_size=132))
def test_issuer_signed_encode_equals_general_encoding(name_spaces, protected, unprotected, payload, signature):
    from protocols.mdoc import _parse as p
    from protocols.mdoc.issuer_signed import IssuerSigned

    issued = IssuerSigned(name_spaces, cose.Sign1._of(protected, {}, unprotected, payload, signature))
    assert issued.encode() == p.encode(issued.to_cbor())


def test_issuer_signed_encode_of_other_shapes_is_the_general_encoding():
    from protocols.mdoc import _parse as p
    from protocols.mdoc.issuer_signed import IssuerSigned, _encode_issued

    auth = cose.Sign1._of(b"\xa1\x01\x26", {1: -7}, {33: b"ds"}, b"payload", b"sig")
    for issued in (IssuerSigned({"ns": (bytearray(b"x"),)}, auth), IssuerSigned({1: (b"x",)}, auth),
                   IssuerSigned({"ns": (b"x",)}, cose.Sign1._of(b"", {}, {}, None, b"sig"))):
        assert _encode_issued(issued) is None
        assert issued.encode() == p.encode(issued.to_cbor())


@pytest.mark.parametrize("size", [0, 23, 24, 255, 256, 65535, 65536])
def test_item_values_at_each_cbor_length_head_bound_have_the_general_encoding(size):
    """RFC 8949 3.1 / 4.2.1: a text or byte string's length sits in its head below 24, in
    one more byte up to 255, in two up to 65535, then four. IssuerSignedItem.create's own
    heads for elementValue give the general encoder's bytes at each bound, and decode back."""
    for value in ("a" * size, bytes(size), "é" * (size // 2)):
        item = IssuerSignedItem.create(1, bytes(16), "v", value)
        assert item.raw == p.encode({"digestID": 1, "random": bytes(16), "elementIdentifier": "v",
                                     "elementValue": value})
        assert IssuerSignedItem.decode(item.raw).element_value == value


def test_issuing_keeps_its_identifier_and_date_tables_bounded():
    """The tables of encoded element identifiers and dates that IssuerSignedItem.create
    keeps are bounded (1024 entries each): issuing many distinct ones never grows them
    past that, and every item is still the general encoder's bytes."""
    from protocols.mdoc import issuer_signed

    for n in range(1100):
        ident, day = f"element_{n}", dt.date(2000, 1, 1) + dt.timedelta(days=n)
        item = IssuerSignedItem.create(n, bytes(16), ident, day)
        assert item.raw == p.encode({"digestID": n, "random": bytes(16), "elementIdentifier": ident,
                                     "elementValue": day})
    assert len(issuer_signed._IDENT_PARTS) <= 1024 and len(issuer_signed._DATES) <= 1024
