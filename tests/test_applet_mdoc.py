"""mdoc applet: device keys born in the SE, IssuerSigned storage over chained STORE DATA,
device signatures and ECDH for deviceMac, persistence and fuzzing."""

from __future__ import annotations

import hashlib
import os

import cbor2
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wallet_sim.applets import APPLET_CLASSES, MDOC_INSTANCE_AID, MDOC_MODULE_AID
from wallet_sim.applets._apdu import parse_tlvs, tlv
from wallet_sim.applets._perso import dgi, parse_dgis
from wallet_sim.applets.errors import AppletStateError
from wallet_sim.applets.mdoc import MdocApplet
from wallet_sim.se.applet import CommandContext

PLAIN = CommandContext()
SCP = CommandContext(secure_channel=True, security_level=0x33)


def apdu(applet, raw: bytes):
    out = applet.process(raw, PLAIN)
    return out[:-2], int.from_bytes(out[-2:], "big")


def perso(applet, *records: bytes, block: int = 200, ctx=SCP):
    stream = b"".join(records)
    blocks = [stream[i : i + block] for i in range(0, len(stream), block)] or [b""]
    for n, data in enumerate(blocks):
        last = n == len(blocks) - 1
        out = applet.store_data(0x88 if last else 0x08, n & 0xFF, data, ctx)
        if not last:
            assert out == b"\x90\x00"
    return {d.tag: d.value for d in parse_dgis(out[:-2])}, int.from_bytes(out[-2:], "big")


def slot_infos(value: bytes) -> dict[int, dict[int, bytes]]:
    out = {}
    for tag, body in parse_tlvs(value):
        assert tag == 0xE1
        f = dict(parse_tlvs(body))
        out[f[0xC1][0]] = f
    return out


def issuer_signed(cose_key: dict, filler: int = 0) -> bytes:
    """A structurally faithful IssuerSigned (18013-5 8.3.2.1.2.2) binding ``cose_key``."""
    mso = {
        "version": "1.0",
        "digestAlgorithm": "SHA-256",
        "valueDigests": {"org.iso.18013.5.1": {0: bytes(32)}},
        "deviceKeyInfo": {"deviceKey": cose_key},
        "docType": "org.iso.18013.5.1.mDL",
        "validityInfo": {},
    }
    payload = cbor2.dumps(cbor2.CBORTag(24, cbor2.dumps(mso)))
    item = cbor2.dumps(
        {
            "digestID": 0,
            "random": os.urandom(16),
            "elementIdentifier": "portrait",
            "elementValue": os.urandom(filler),
        }
    )
    return cbor2.dumps(
        {
            "nameSpaces": {"org.iso.18013.5.1": [cbor2.CBORTag(24, item)]},
            "issuerAuth": [cbor2.dumps({1: -7}), {}, payload, bytes(64)],
        }
    )


def generate(applet, slots: bytes, challenge: bytes | None = None):
    challenge = challenge or os.urandom(32)
    out, sw = perso(applet, dgi(0x0201, tlv(0xC1, slots) + tlv(0xC6, challenge)))
    assert sw == 0x9000
    return slot_infos(out[0x0201]), challenge


@pytest.fixture(scope="module")
def wallet() -> dict:
    a = MdocApplet()
    infos, _ = generate(a, b"\x00\x01\x02")
    creds = {
        0: issuer_signed(cbor2.loads(infos[0][0xD1]), filler=5000),
        1: issuer_signed(cbor2.loads(infos[1][0xD1])),
    }
    for n, cred in creds.items():
        _, sw = perso(a, dgi(0x0203, tlv(0xC1, bytes([n])) + tlv(0xD2, cred)))
        assert sw == 0x9000
    return {"snapshot": a.snapshot(), "infos": infos, "creds": creds}


def fresh(wallet) -> MdocApplet:
    a = MdocApplet()
    a.restore(wallet["snapshot"])
    assert a.select(0x00, PLAIN) == b"\x90\x00"
    return a


def test_registry_and_proprietary_aid():
    assert APPLET_CLASSES[MDOC_MODULE_AID] is MdocApplet
    assert MDOC_INSTANCE_AID.startswith(bytes.fromhex("F06D63726564"))


def test_batch_generation_proves_possession_of_distinct_p256_keys():
    a = MdocApplet()
    infos, challenge = generate(a, b"\x03\x04\x05\x06")
    assert set(infos) == {3, 4, 5, 6}
    assert len({f[0xC3] for f in infos.values()}) == 4
    for f in infos.values():
        pub = serialization.load_der_public_key(f[0xC3])
        assert isinstance(pub.curve, ec.SECP256R1)
        pub.verify(f[0xC4], challenge + f[0xC3], ec.ECDSA(hashes.SHA256()))
        key = cbor2.loads(f[0xD1])
        n = pub.public_numbers()
        assert key == {1: 2, -1: 1, -2: n.x.to_bytes(32, "big"), -3: n.y.to_bytes(32, "big")}
    # PROVE KEYS answers the same keys for a new challenge
    c2 = os.urandom(16)
    out, sw = perso(a, dgi(0x0202, tlv(0xC1, b"\x04") + tlv(0xC6, c2)))
    assert sw == 0x9000 and slot_infos(out[0x0202])[4][0xC3] == infos[4][0xC3]
    assert perso(a, dgi(0x0202, tlv(0xC1, b"\x00") + tlv(0xC6, c2)))[1] == 0x6A88


def test_list_slots_and_read_credential_in_chunks(wallet):
    a = fresh(wallet)
    listing, sw = apdu(a, bytes.fromhex("8010000000"))
    assert sw == 0x9000
    rows = {listing[i]: listing[i + 1 : i + 6] for i in range(0, len(listing), 6)}
    assert rows[0] == b"\x03" + len(wallet["creds"][0]).to_bytes(4, "big")
    assert rows[2] == b"\x01" + bytes(4)  # key, no credential yet
    cred = wallet["creds"][0]
    assert len(cred) > 5000
    out = b""
    while True:  # short APDUs: Le=00 (256) until 6B00
        chunk, sw = apdu(a, b"\x80\x14\x00\x00\x03" + len(out).to_bytes(3, "big") + b"\x00")
        if sw == 0x6B00:
            break
        assert sw == 0x9000
        out += chunk
    assert out == cred
    # extended Le = 0000 asks 65536: the whole credential in one response
    whole, sw = apdu(a, b"\x80\x14\x00\x00\x00\x00\x03\x00\x00\x00\x00\x00")
    assert sw == 0x9000 and whole == cred
    spki, sw = apdu(a, b"\x80\x12\x01\x00\x00")
    assert sw == 0x9000 and spki == wallet["infos"][1][0xC3]
    assert apdu(a, b"\x80\x14\x02\x00\x03\x00\x00\x00\x00")[1] == 0x6A88  # no credential
    assert apdu(a, b"\x80\x14\x09\x00\x03\x00\x00\x00\x00")[1] == 0x6A88  # no key
    assert apdu(a, b"\x80\x14\x10\x00\x03\x00\x00\x00\x00")[1] == 0x6A86  # slot 16
    assert apdu(a, b"\x00\x14\x00\x00\x03\x00\x00\x00\x00")[1] == 0x6E00
    assert apdu(a, b"\x80\x99\x00\x00")[1] == 0x6D00


def test_sign_device_authentication_digest(wallet):
    a = fresh(wallet)
    pub = serialization.load_der_public_key(wallet["infos"][1][0xC3])
    digest = hashlib.sha256(b"DeviceAuthenticationBytes").digest()
    sig, sw = apdu(a, b"\x80\x2a\x01\x00\x20" + digest + b"\x00")
    assert sw == 0x9000 and len(sig) == 64
    der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    pub.verify(der, digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    assert apdu(a, b"\x80\x2a\x01\x00\x1f" + digest[:31])[1] == 0x6700
    assert apdu(a, b"\x80\x2a\x07\x00\x20" + digest)[1] == 0x6A88


def test_key_agreement_gives_the_readers_shared_secret(wallet):
    a = fresh(wallet)
    reader = ec.generate_private_key(ec.SECP256R1())
    device_pub = serialization.load_der_public_key(wallet["infos"][0][0xC3])
    expected = reader.exchange(ec.ECDH(), device_pub)
    point = reader.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    z, sw = apdu(a, b"\x80\x86\x00\x00\x41" + point + b"\x00")
    assert sw == 0x9000 and z == expected
    spki = reader.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert apdu(a, b"\x80\x86\x00\x00" + bytes([len(spki)]) + spki)[0] == expected
    bad = b"\x04" + bytes(64)
    assert apdu(a, b"\x80\x86\x00\x00\x41" + bad)[1] == 0x6A80
    p384 = (
        ec.generate_private_key(ec.SECP384R1())
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    assert apdu(a, b"\x80\x86\x00\x00" + bytes([len(p384)]) + p384)[1] == 0x6A80


def test_write_credential_refusals_change_nothing(wallet):
    a = fresh(wallet)
    before = a.snapshot()
    other = issuer_signed(cbor2.loads(wallet["infos"][1][0xD1]))
    refusals = {
        "other slot's key": perso(a, dgi(0x0203, tlv(0xC1, b"\x00") + tlv(0xD2, other)))[1],
        "no key": perso(a, dgi(0x0203, tlv(0xC1, b"\x09") + tlv(0xD2, other)))[1],
        "not CBOR": perso(a, dgi(0x0203, tlv(0xC1, b"\x02") + tlv(0xD2, b"\xff\x00")))[1],
        "two slots": perso(a, dgi(0x0203, tlv(0xC1, b"\x01\x02") + tlv(0xD2, other)))[1],
        "plain": perso(a, dgi(0x0204, tlv(0xC1, b"\x00")), ctx=PLAIN)[1],
        "unknown DGI": perso(a, dgi(0x0299, b""))[1],
        "atomic": perso(a, dgi(0x0204, tlv(0xC1, b"\x00")), dgi(0x0201, tlv(0xC1, b"\x20")))[1],
    }
    assert refusals == {
        "other slot's key": 0x6A80,
        "no key": 0x6985,
        "not CBOR": 0x6A80,
        "two slots": 0x6A80,
        "plain": 0x6982,
        "unknown DGI": 0x6A88,
        "atomic": 0x6A80,
    }
    assert a.snapshot() == before


def test_regenerate_clears_the_credential_and_delete_empties_the_slot(wallet):
    a = fresh(wallet)
    infos, _ = generate(a, b"\x00")
    assert infos[0][0xC3] != wallet["infos"][0][0xC3]
    out, _ = perso(a, dgi(0x0200, b""))
    state = slot_infos(out[0x0200])
    assert state[0][0xCF] == bytes(4) and 0xD3 not in state[0]
    assert state[1][0xD3] == hashlib.sha256(wallet["creds"][1]).digest()
    assert state[1][0xC5] == hashlib.sha256(wallet["infos"][1][0xC3]).digest()
    assert perso(a, dgi(0x0204, tlv(0xC1, b"\x00\x01")))[1] == 0x9000
    out, _ = perso(a, dgi(0x0200, b""))
    assert set(slot_infos(out[0x0200])) == {2}
    assert apdu(a, b"\x80\x2a\x01\x00\x20" + bytes(32))[1] == 0x6A88


def test_snapshot_round_trip_and_describe(wallet):
    a = fresh(wallet)
    image = cbor2.loads(cbor2.dumps(a.snapshot()))
    b = MdocApplet()
    b.restore(image)
    assert b.snapshot() == a.snapshot()
    digest = bytes(range(32))
    sig, sw = apdu(b, b"\x80\x2a\x00\x00\x20" + digest)
    assert sw == 0x9000
    pub = serialization.load_der_public_key(wallet["infos"][0][0xC3])
    pub.verify(
        encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")),
        digest,
        ec.ECDSA(Prehashed(hashes.SHA256())),
    )
    info = b.describe()
    assert info["slots"][0]["doc_type"] == "org.iso.18013.5.1.mDL"
    assert info["slots"][2]["credential_bytes"] == 0
    for s in image["slots"].values():
        assert s["pkcs8"].hex() not in repr(info)
    with pytest.raises(AppletStateError):
        MdocApplet().restore({"version": 1, "slots": {99: {}}})
    with pytest.raises(AppletStateError):
        MdocApplet().restore({"version": 1, "slots": {0: {"pkcs8": b"x", "spki": b"y"}}})


structured = st.builds(
    lambda cla, ins, p1, p2, body: bytes([cla, ins, p1, p2]) + body,
    st.sampled_from([0x80, 0x00, 0x84, 0xC0]),
    st.sampled_from([0x10, 0x12, 0x14, 0x2A, 0x86, 0xA4]),
    st.integers(0, 20),
    st.integers(0, 2),
    st.one_of(
        st.just(b""),
        st.binary(max_size=1),
        st.binary(min_size=1, max_size=80).map(lambda d: bytes([len(d)]) + d),
        st.binary(min_size=1, max_size=80).map(lambda d: bytes([len(d)]) + d + b"\x00"),
        st.binary(max_size=100),
    ),
)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=st.one_of(structured, st.binary(max_size=200)))
def test_fuzzed_apdus_never_raise_nor_change_state_nor_leak_keys(wallet, raw):
    a = fresh(wallet)
    before = a.snapshot()
    out = a.process(raw, PLAIN)
    assert len(out) >= 2 and a.snapshot() == before
    for s in before["slots"].values():
        scalar = serialization.load_der_private_key(s["pkcs8"], None).private_numbers()
        assert scalar.private_value.to_bytes(32, "big") not in out
        assert s["pkcs8"] not in out


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(p1=st.integers(0, 255), p2=st.integers(0, 2), data=st.binary(max_size=80))
def test_fuzzed_store_data_never_raises(wallet, p1, p2, data):
    a = fresh(wallet)
    before = a.snapshot()
    out = a.store_data(p1, p2, data, SCP)
    if out[-2:] != b"\x90\x00" or not p1 & 0x80:
        assert a.snapshot() == before


def test_the_cose_key_is_the_spkis_point_however_the_spki_is_written():
    """cose_key cuts X and Y out of an SPKI of the P-256 uncompressed form; any other
    encoding of the same key (compressed point) is loaded and gives the same COSE_Key."""
    from wallet_sim.applets.mdoc import cose_key

    for _ in range(50):
        pub = ec.generate_private_key(ec.SECP256R1()).public_key()
        n = pub.public_numbers()
        want = cbor2.dumps({1: 2, -1: 1, -2: n.x.to_bytes(32, "big"), -3: n.y.to_bytes(32, "big")},
                           canonical=True)
        spki = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        assert cose_key(spki) == want
        point = pub.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)
        compressed = spki[:23] + bytes([0x03, 0x22, 0x00]) + point  # the same key, compressed
        compressed = bytes([0x30, len(compressed) - 2]) + compressed[2:]
        assert compressed != spki and cose_key(compressed) == want
