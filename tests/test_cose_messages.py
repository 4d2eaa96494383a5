"""protocols.cose: COSE_Sign1 / COSE_Mac0 / COSE_Key against Annex D and pycose."""

from __future__ import annotations

import cbor2
import pytest
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st
from test_mdoc_vectors import cert, hexv, public_xy

from protocols import cbor, cose
from protocols.cose.algorithms import ecdsa_verify_raw, raw_to_der_sized
from protocols.cose.mac0 import mac_structure
from protocols.cose.sign1 import verify_sign1

SETTINGS = settings(max_examples=200, deadline=None)


def test_annex_d_issuer_auth_verifies_with_ds_cert():
    msg = cose.Sign1.decode(hexv("issuer_auth"))
    assert msg.alg == cose.ES256
    assert msg.x5chain == [hexv("ds_cert")]
    assert msg.payload == hexv("mobile_security_object_bytes")
    msg.verify(cert("ds_cert").public_key())
    assert msg.encode() == hexv("issuer_auth")


def test_annex_d_reader_auth_verifies_detached():
    msg = cose.Sign1.decode(hexv("reader_auth"))
    assert msg.payload is None
    assert msg.x5chain == [hexv("reader_cert")]
    msg.verify(cert("reader_cert").public_key(), detached=hexv("reader_authentication_bytes"))
    with pytest.raises(cose.CoseSignatureError):
        msg.verify(cert("reader_cert").public_key(), detached=hexv("reader_authentication_bytes") + b"\0")
    with pytest.raises(cose.CoseSignatureError, match="detached"):
        msg.verify(cert("reader_cert").public_key())


def test_annex_d_device_mac():
    mac = cose.Mac0.decode(hexv("device_mac"))
    assert mac.alg == cose.HMAC_256_256 and mac.unprotected == {} and mac.payload is None
    mac.verify(hexv("e_mac_key"), detached=hexv("device_authentication_bytes"))
    again = cose.Mac0.create(hexv("e_mac_key"), None, detached=hexv("device_authentication_bytes"))
    assert again.encode() == hexv("device_mac")
    with pytest.raises(cose.CoseSignatureError):
        mac.verify(bytes(32), detached=hexv("device_authentication_bytes"))


def test_annex_d_cose_key_round_trip():
    raw, value = cbor.unembed(hexv("e_device_key_bytes"))
    key = cose.CoseKey.from_map(value)
    assert (key.x, key.y) == public_xy("ephemeral_device_key")
    assert key.encode() == raw
    assert cose.CoseKey.from_public_key(key.public_key()) == key


def test_cose_key_coordinates_are_padded():
    # find a key whose x has a leading zero byte: encoding must keep 32 bytes
    for i in range(1, 2000):
        pub = ec.derive_private_key(i, ec.SECP256R1()).public_key()
        if pub.public_numbers().x < 2**248:
            break
    key = cose.CoseKey.from_public_key(pub)
    assert len(key.x) == 32 and key.x[0] == 0
    assert cose.CoseKey.decode(key.encode()).public_key().public_numbers() == pub.public_numbers()
    with pytest.raises(cose.CoseKeyError, match="32 bytes"):
        cose.CoseKey.from_map({1: 2, -1: 1, -2: key.x.lstrip(b"\0"), -3: key.y})


def test_cose_key_refuses_point_off_curve():
    key = cose.CoseKey(1, b"\1" * 32, b"\2" * 32)
    with pytest.raises(cose.CoseKeyError, match="not on"):
        key.public_key()


def test_compressed_cose_key_is_accepted():
    pub = ec.generate_private_key(ec.SECP256R1()).public_key()
    n = pub.public_numbers()
    key = cose.CoseKey.from_map({1: 2, -1: 1, -2: n.x.to_bytes(32, "big"), -3: bool(n.y & 1)})
    assert key.public_key().public_numbers() == n


@pytest.mark.parametrize("curve", [ec.SECP256R1(), ec.SECP384R1(), ec.SECP521R1()])
def test_sign1_all_curves_and_tagging(curve):
    sk = ec.generate_private_key(curve)
    signer = cose.key_signer(sk)
    msg = cose.Sign1.create(signer, b"hello", unprotected={33: b"cert"})
    assert len(msg.signature) == 2 * ((curve.key_size + 7) // 8)
    for data in (msg.encode(), msg.encode(tag=True)):
        back = cose.Sign1.decode(data)
        assert back == msg
        back.verify(sk.public_key())
    assert cbor.loads(msg.encode(tag=True)).tag == 18
    other = ec.generate_private_key(curve).public_key()
    with pytest.raises(cose.CoseSignatureError):
        msg.verify(other)


def test_sign1_wrong_curve_key_is_refused():
    msg = cose.Sign1.create(cose.key_signer(ec.generate_private_key(ec.SECP256R1())), b"x")
    with pytest.raises(cose.CoseSignatureError, match="P-256|secp256r1"):
        msg.verify(ec.generate_private_key(ec.SECP384R1()).public_key())


@pytest.mark.parametrize(("alg", "curve", "wrong"), [
    (cose.ESP256, ec.SECP256R1(), ec.SECP384R1()),
    (cose.ESP384, ec.SECP384R1(), ec.SECP256R1()),
    (cose.ESP512, ec.SECP521R1(), ec.SECP384R1()),
])
def test_fully_specified_ecdsa_algorithms_verify_on_their_curve_only(alg, curve, wrong):
    """RFC 9864 §2.1: ESP256/384/512 are ES256/384/512 with the curve fixed; multipaz signs
    its reader authentication with ESP256 (-9). A signer announcing one is verified; the
    same signature under a key of another curve is refused by name."""
    sk = ec.generate_private_key(curve)
    inner = cose.key_signer(sk)

    class Fully:
        def sign(self, tbs: bytes) -> bytes:
            return inner.sign(tbs)

    Fully.alg = alg
    msg = cose.Sign1.decode(cose.Sign1.create(Fully(), b"payload").encode())
    assert msg.alg == alg
    msg.verify(sk.public_key())
    verify_sign1(msg, sk.public_key())
    name = cose.ECDSA_ALGORITHMS[alg].name
    with pytest.raises(cose.CoseSignatureError, match=name):
        msg.verify(ec.generate_private_key(wrong).public_key())
    with pytest.raises(cose.CoseSignatureError, match=f"{name} signature does not verify"):
        msg.verify(ec.generate_private_key(curve).public_key())
    # we sign with the identifiers ISO/IEC 18013-5 lists
    assert cose.algorithm_for_curve(curve).name.startswith("ES") and not cose.algorithm_for_curve(curve).name.startswith("ESP")


def test_der_raw_round_trip():
    sk = ec.generate_private_key(ec.SECP256R1())
    der = sk.sign(b"m", ec.ECDSA(hashes.SHA256()))
    raw = cose.der_to_raw(der, sk.curve)
    assert len(raw) == 64 and cose.raw_to_der(raw, sk.curve) == der
    with pytest.raises(cose.CoseSignatureError):
        cose.raw_to_der(raw[:-1], sk.curve)


# --- pycose cross-checks (the pycose traps of issue 2 item 6) ---------------------------


def _pycose_key(sk: ec.EllipticCurvePrivateKey):
    from pycose.keys import EC2Key

    return EC2Key._from_cryptography_key(sk)


def test_trap_pycose_decode_rejects_untagged_sign1():
    from pycose.messages import Sign1Message

    with pytest.raises(Exception):  # noqa: B017 - whatever pycose raises, it refuses
        Sign1Message.decode(hexv("issuer_auth"))


def test_trap_pycose_decode_breaks_on_tagged_sign1_under_cbor2_6():
    from pycose.messages import Sign1Message

    tagged = cose.Sign1.decode(hexv("issuer_auth")).encode(tag=True)
    with pytest.raises(Exception):  # noqa: B017 - arrays come back as tuples; pycose pops them
        Sign1Message.decode(tagged)


def test_pycose_verifies_ours():
    from pycose.messages import Sign1Message

    sk = ec.generate_private_key(ec.SECP256R1())
    ours = cose.Sign1.create(cose.key_signer(sk), b"payload", unprotected={33: b"c"})
    theirs = Sign1Message.from_cose_obj(list(cbor2.loads(ours.encode())), True)
    theirs.key = _pycose_key(sk)
    assert theirs.verify_signature()


def test_ours_verifies_pycose():
    from pycose.algorithms import Es256
    from pycose.headers import Algorithm
    from pycose.messages import Sign1Message

    sk = ec.generate_private_key(ec.SECP256R1())
    msg = Sign1Message(phdr={Algorithm: Es256}, payload=b"from pycose")
    msg.key = _pycose_key(sk)
    encoded = msg.encode(tag=False)
    cose.Sign1.decode(encoded).verify(sk.public_key())


def test_pycose_mac0_agrees():
    from pycose.algorithms import HMAC256
    from pycose.headers import Algorithm
    from pycose.keys import SymmetricKey
    from pycose.messages import Mac0Message

    key = bytes(range(32))
    msg = Mac0Message(phdr={Algorithm: HMAC256}, payload=b"data")
    msg.key = SymmetricKey(k=key)
    encoded = msg.encode(tag=False)
    mine = cose.Mac0.decode(encoded)
    mine.verify(key)
    assert cose.Mac0.create(key, b"data").tag == mine.tag


def test_protected_header_bytes_are_never_reencoded():
    # a non-canonical protected header {1:-7, 4:h''} written with keys reversed
    sk = ec.generate_private_key(ec.SECP256R1())
    protected_bytes = bytes.fromhex("a2044001 26".replace(" ", ""))
    tbs = cose.sig_structure(protected_bytes, b"", b"p")
    sig = cose.key_signer(sk).sign(tbs)
    data = cbor2.dumps([protected_bytes, {}, b"p", sig])
    msg = cose.Sign1.decode(data)
    assert msg.protected_bytes == protected_bytes and msg.alg == cose.ES256
    msg.verify(sk.public_key())


def test_duplicate_labels_in_protected_header_are_refused():
    data = cbor2.dumps([bytes.fromhex("a201260126"), {}, b"p", b"\0" * 64])
    with pytest.raises(cose.CoseDecodeError, match="Duplicate"):
        cose.Sign1.decode(data)


@SETTINGS
@given(st.binary(max_size=80))
def test_arbitrary_bytes_into_decoders(data):
    for decoder in (cose.Sign1.decode, cose.Mac0.decode, cose.CoseKey.decode):
        try:
            decoder(data)
        except cose.CoseError:
            pass


@SETTINGS
@given(st.integers(0, 8 * 64 - 1))
def test_any_flipped_signature_bit_fails(bit):
    msg = cose.Sign1.decode(hexv("issuer_auth"))
    sig = bytearray(msg.signature)
    sig[bit // 8] ^= 1 << (bit % 8)
    bad = cose.Sign1(msg.protected_bytes, msg.protected, msg.unprotected, msg.payload, bytes(sig))
    with pytest.raises(cose.CoseSignatureError):
        bad.verify(cert("ds_cert").public_key())


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([32, 48, 66]), st.data())
def test_raw_and_der_signature_forms_round_trip(size, data):
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    top = (1 << (8 * size)) - 1
    small = st.integers(0, 300)
    r = data.draw(st.integers(0, top) | small | st.integers(top - 300, top))
    s = data.draw(st.integers(0, top) | small | st.integers(top - 300, top))
    raw = r.to_bytes(size, "big") + s.to_bytes(size, "big")
    curve = {32: ec.SECP256R1(), 48: ec.SECP384R1(), 66: ec.SECP521R1()}[size]
    der = encode_dss_signature(r, s)
    assert cose.raw_to_der(raw, curve) == der
    assert raw_to_der_sized(raw, size) == der  # the hand-written DER of verification
    assert cose.der_to_raw(der, curve) == raw


def _outcome(fn):
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - compared, type and text
        return type(exc).__name__, str(exc)
    return None


_KEYS = {c: ec.generate_private_key(c()) for c in (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)}


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(list(_KEYS)), st.sampled_from(list(_KEYS)), st.booleans(), st.data())
def test_verify_sign1_is_sign1_verify(signing, checking, detached, data):
    """The lean verification of MdocVerifier gives Sign1.verify's outcome, error text included,
    on genuine and tampered messages, wrong keys and curves, and misplaced payloads."""
    key = _KEYS[signing]
    content = data.draw(st.binary(max_size=600))
    msg = (cose.Sign1.create(cose.key_signer(key), None, detached=content) if detached
           else cose.Sign1.create(cose.key_signer(key), content))
    change = data.draw(st.sampled_from(["none", "signature", "length", "content", "alg", "no alg", "bool alg",
                                        "protected", "detached given", "detached missing"]))
    protected, protected_bytes, signature = dict(msg.protected), msg.protected_bytes, msg.signature
    given_detached = content if detached else None
    if change == "signature":
        bit = data.draw(st.integers(0, 8 * len(signature) - 1))
        signature = bytes(b ^ (1 << (bit % 8)) if i == bit // 8 else b for i, b in enumerate(signature))
    elif change == "length":
        signature = signature[: data.draw(st.integers(0, len(signature) + 3))] + bytes(data.draw(st.integers(0, 3)))
    elif change == "content":
        given_detached = (content + b"x") if detached else None
        if not detached:
            msg = cose.Sign1(protected_bytes, protected, msg.unprotected, content + b"x", signature)
    elif change in ("alg", "no alg", "bool alg"):
        protected = {1: data.draw(st.sampled_from([-7, -35, -36, 5, 99]))} if change == "alg" else (
            {} if change == "no alg" else {1: True})
        protected_bytes = cbor.dumps(protected) if protected else b""
    elif change == "protected":
        protected_bytes = protected_bytes + b"\x00"
    elif change == "detached given":
        given_detached = b"other"
    elif change == "detached missing":
        given_detached = None
    msg = cose.Sign1(protected_bytes, protected, msg.unprotected, msg.payload if change != "content" or detached
                     else content + b"x", signature)
    public = _KEYS[checking].public_key()
    assert (_outcome(lambda: verify_sign1(msg, public, detached=given_detached))
            == _outcome(lambda: msg.verify(public, detached=given_detached)))


def test_verify_sign1_with_a_key_that_is_not_ec():
    from cryptography.hazmat.primitives.asymmetric import ed25519

    msg = cose.Sign1.create(cose.key_signer(_KEYS[ec.SECP256R1]), b"m")
    other = ed25519.Ed25519PrivateKey.generate().public_key()
    got = _outcome(lambda: verify_sign1(msg, other))
    assert got == _outcome(lambda: msg.verify(other)) and got[0] == "CoseSignatureError"


@settings(max_examples=400, deadline=None)
@given(st.sampled_from([32, 48, 66]), st.data())
def test_der_to_raw_sized_equals_der_to_raw(size, data):
    """The DER signature cut into r||s by hand gives der_to_raw's bytes, or its error, for
    any r and s (short ones too) and for mangled DER."""
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    from protocols.cose.algorithms import der_to_raw_sized

    top = (1 << (8 * size)) - 1
    small = st.integers(0, 300)
    r = data.draw(st.integers(0, top) | small | st.integers(top - 300, top) | st.integers(top + 1, 2 * top))
    s = data.draw(st.integers(0, top) | small | st.integers(top - 300, top))
    der = bytearray(encode_dss_signature(r, s))
    for _ in range(data.draw(st.integers(0, 2))):  # some mangled: a byte changed, cut or added
        at = data.draw(st.integers(0, len(der) - 1))
        how = data.draw(st.sampled_from(["flip", "cut", "add"]))
        if how == "flip":
            der[at] ^= data.draw(st.sampled_from([0x01, 0x80, 0xFF]))
        elif how == "cut":
            del der[at]
        else:
            der.insert(at, data.draw(st.integers(0, 255)))
    curve = {32: ec.SECP256R1(), 48: ec.SECP384R1(), 66: ec.SECP521R1()}[size]
    assert _outcome(lambda: der_to_raw_sized(bytes(der), size)) == _outcome(lambda: cose.der_to_raw(bytes(der), curve))
    if _outcome(lambda: cose.der_to_raw(bytes(der), curve)) is None:
        assert der_to_raw_sized(bytes(der), size) == cose.der_to_raw(bytes(der), curve)


@pytest.mark.parametrize("size", [23, 24, 255, 256, 257])
def test_verify_sign1_at_the_byte_string_head_boundaries(size):
    """verify_sign1 writes the Sig_structure heads itself (a table up to 255 bytes): content
    and protected headers of 23/24 and 255/256/257 bytes, where a bstr head changes length,
    verify as with Sign1.verify, carried or detached, and a changed byte still fails."""
    key = _KEYS[ec.SECP256R1]
    content = (bytes(range(256)) * 2)[:size]
    filler = next("x" * k for k in range(300) if len(cbor.dumps({1: -7, "f": "x" * k})) == size)
    with_header = cose.Sign1.create(cose.key_signer(key), b"m", protected={"f": filler})
    assert len(with_header.protected_bytes) == size
    for msg, detached in ((cose.Sign1.create(cose.key_signer(key), content), None),
                          (cose.Sign1.create(cose.key_signer(key), None, detached=content), content),
                          (with_header, None)):
        verify_sign1(msg, key.public_key(), detached=detached)
        msg.verify(key.public_key(), detached=detached)
    forged = cose.Sign1.create(cose.key_signer(key), None, detached=content)
    with pytest.raises(cose.CoseSignatureError):
        verify_sign1(forged, key.public_key(), detached=content[:-1] + bytes([content[-1] ^ 1]))


def test_verify_sign1_refuses_a_carried_payload_beside_a_detached_one_and_a_missing_alg():
    key = _KEYS[ec.SECP256R1]
    carried = cose.Sign1.create(cose.key_signer(key), b"content")
    with pytest.raises(cose.CoseSignatureError, match="carries a payload"):
        verify_sign1(carried, key.public_key(), detached=b"content")
    no_alg = cose.Sign1(b"", {}, {}, b"content", carried.signature)
    with pytest.raises(cose.CoseSignatureError, match="no algorithm in its protected header"):
        verify_sign1(no_alg, key.public_key())


@pytest.mark.parametrize("key", [b"", "a text key", None])
def test_mac0_refuses_an_empty_or_non_bytes_key(key):
    """HMAC accepts an empty key: a deviceMac checked with an EMacKey of b"" would accept a
    tag anyone can make. Creating and verifying both refuse it."""
    tag = cose.Mac0.create(b"k" * 32, None, detached=b"content")
    with pytest.raises(cose.CoseError, match="HMAC key must be non-empty bytes"):
        tag.verify(key, detached=b"content")
    with pytest.raises(cose.CoseError, match="HMAC key must be non-empty bytes"):
        cose.Mac0.create(key, None, detached=b"content")


def test_mac0_verify_refuses_another_alg_a_misplaced_payload_and_a_missing_one():
    """Mac0.verify checks only HMAC 256/256 (5): a tag labelled with another algorithm (or
    none) is refused even when HMAC-SHA256 over it would match; a carried payload beside a
    detached one, and neither, are refused as for Sign1."""
    key = b"k" * 32
    genuine = cose.Mac0.create(key, None, detached=b"content")
    for protected in ({1: 4}, {1: 6}, {}):
        protected_bytes = cbor.dumps(protected) if protected else b""
        mac = hmac.HMAC(key, hashes.SHA256())
        mac.update(mac_structure(protected_bytes, b"", b"content"))
        relabelled = cose.Mac0(protected_bytes, protected, {}, None, mac.finalize())
        with pytest.raises(cose.CoseSignatureError, match="unsupported: only HMAC 256/256"):
            relabelled.verify(key, detached=b"content")
    carried = cose.Mac0.create(key, b"content")
    with pytest.raises(cose.CoseSignatureError, match="carries a payload"):
        carried.verify(key, detached=b"content")
    with pytest.raises(cose.CoseSignatureError, match="detached content is needed"):
        genuine.verify(key)
    genuine.verify(key, detached=b"content")


_P = cbor.dumps({1: -7})


@pytest.mark.parametrize(("message", "why"), [
    (cbor2.CBORTag(17, [_P, {}, b"p", b"s"]), "unexpected tag 17"),  # a COSE_Mac0 tag on a COSE_Sign1
    ([_P, {}, b"p"], "array of 4"),
    ({"not": "an array"}, "array of 4"),
    (["not bytes", {}, b"p", b"s"], "protected header must be a byte string"),
    ([_P, [4, b"k"], b"p", b"s"], "unprotected header must be a map"),
    ([_P, {}, 7, b"s"], "payload must be a byte string or nil"),
    ([_P, {}, b"p", 7], "signature/tag must be a byte string"),
    ([cbor.dumps([1, -7]), {}, b"p", b"s"], "protected header must encode a map"),
    ([_P, {1: -7}, b"p", b"s"], "in both header buckets"),  # alg in both: which one was signed?
])
@pytest.mark.parametrize("form", ["bytes", "decoded"])
def test_a_malformed_cose_sign1_is_refused_by_name(message, why, form):
    """Each structural rule of COSE_Sign1 (RFC 9052 4.2, 3), from bytes and from the array
    as it comes decoded out of a DeviceResponse (the decoder's fast path)."""
    data = cbor2.dumps(message) if form == "bytes" else message
    with pytest.raises(cose.CoseDecodeError, match=why):
        cose.Sign1.decode(data)


def test_an_empty_protected_header_is_no_map_and_an_unprotected_alg_is_not_taken():
    """The empty protected header is the empty bstr (RFC 9052 3): decoded as no label at all.
    An alg in the unprotected header is not what was signed: verification refuses."""
    key = _KEYS[ec.SECP256R1]
    signed = cose.Sign1.create(cose.key_signer(key), b"p")
    for form in (cbor2.dumps([b"", {1: -7}, b"p", signed.signature]), [b"", {1: -7}, b"p", signed.signature]):
        msg = cose.Sign1.decode(form)
        assert msg.protected == {} and msg.alg is None
        with pytest.raises(cose.CoseSignatureError, match="no algorithm in its protected header"):
            msg.verify(key.public_key())
        with pytest.raises(cose.CoseSignatureError, match="no algorithm in its protected header"):
            verify_sign1(msg, key.public_key())


def _ecdsa_cases():
    p256, p384 = _KEYS[ec.SECP256R1], _KEYS[ec.SECP384R1]
    tbs = b"to be signed"
    good = cose.key_signer(p256).sign(tbs)
    flipped = good[:-1] + bytes([good[-1] ^ 1])
    from cryptography.hazmat.primitives.asymmetric import ed25519
    return {
        "genuine": (-7, p256.public_key(), good, tbs, None),
        "ESP256 (fully specified)": (-9, p256.public_key(), good, tbs, None),
        "flipped bit": (-7, p256.public_key(), flipped, tbs, "does not verify"),
        "other content": (-7, p256.public_key(), good, tbs + b"!", "does not verify"),
        "unsupported alg": (99, p256.public_key(), good, tbs, "unsupported signature algorithm 99"),
        "key of another curve": (-7, p384.public_key(), good, tbs, "ES256 needs a secp256r1 key, got secp384r1"),
        "short signature": (-7, p256.public_key(), good[:-1], tbs, "must be 64 bytes, got 63"),
        "long signature": (-7, p256.public_key(), good + b"\0", tbs, "must be 64 bytes, got 65"),
        "not an EC key": (-7, ed25519.Ed25519PrivateKey.generate().public_key(), good, tbs, "needs an EC public key"),
    }


@pytest.mark.parametrize("case", list(_ecdsa_cases()))
def test_ecdsa_verify_and_its_fast_twin_refuse_alike(case):
    """protocols.cose.ecdsa_verify (also what OpenID4VP request objects are checked with) and
    ecdsa_verify_raw, the fast path of every COSE_Sign1: the same verdict and the same
    reason for a genuine signature, a changed bit or content, an unsupported alg, a key of
    another curve, a signature of the wrong length and a key that is not EC."""
    alg, key, signature, tbs, why = _ecdsa_cases()[case]
    slow = _outcome(lambda: cose.ecdsa_verify(alg, key, signature, tbs))
    fast = _outcome(lambda: ecdsa_verify_raw(alg, key, signature, tbs))
    assert slow == fast
    if why is None:
        assert slow is None
    else:
        assert slow[0] in ("CoseSignatureError", "CoseKeyError") and why in slow[1], slow
