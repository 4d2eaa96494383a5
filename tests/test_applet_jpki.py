"""JPKI applet: the APDUs JPKI readers send (shared/context/JPKI-AP.md), PINs to the count,
signatures checked with cryptography, personalisation records, persistence and fuzzing."""

from __future__ import annotations

import datetime
import hashlib
import os

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    NoDigestInfo,
    Prehashed,
    encode_dss_signature,
)
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wallet_sim.applets import APPLET_CLASSES, JPKI_INSTANCE_AID, JPKI_MODULE_AID
from wallet_sim.applets._apdu import parse_tlvs, tlv
from wallet_sim.applets._perso import dgi, parse_dgis
from wallet_sim.applets.errors import AppletStateError
from wallet_sim.applets.jpki import JpkiApplet
from wallet_sim.se.applet import CommandContext

PLAIN = CommandContext()
SCP = CommandContext(secure_channel=True, security_level=0x33)
PIN, PASSWORD, PUK = b"1234", b"ABC123", b"12345678"
SHA256_DI = bytes.fromhex("3031300d060960864801650304020105000420")
SHA384_DI = bytes.fromhex("3041300d060960864801650304020205000430")
_CA_KEY = rsa.generate_private_key(65537, 2048)


def apdu(applet: JpkiApplet, hexstr: str | bytes, ctx: CommandContext = PLAIN):
    raw = bytes.fromhex(hexstr.replace(" ", "")) if isinstance(hexstr, str) else hexstr
    out = applet.process(raw, ctx)
    return out[:-2], int.from_bytes(out[-2:], "big")


def perso(applet, *records: bytes, ctx: CommandContext = SCP, block: int = 240):
    """Send DGI records as one STORE DATA sequence in blocks; return (responses, sw)."""
    stream = b"".join(records)
    blocks = [stream[i : i + block] for i in range(0, len(stream), block)] or [b""]
    for n, data in enumerate(blocks):
        last = n == len(blocks) - 1
        out = applet.store_data(0x88 if last else 0x08, n, data, ctx)
        sw = int.from_bytes(out[-2:], "big")
        if not last:
            assert sw == 0x9000
    return {d.tag: d.value for d in parse_dgis(out[:-2])}, sw


def fields(value: bytes) -> dict[int, bytes]:
    return dict(parse_tlvs(value))


def cert_for(spki: bytes, cn: str) -> bytes:
    now = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "JP")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(name)
        .public_key(serialization.load_der_public_key(spki))
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(serialization.load_der_public_key(spki)),
            critical=False,
        )
        .sign(_CA_KEY, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


def gen(slot: int, alg: int, challenge: bytes) -> bytes:
    return dgi(0x0101, tlv(0xC1, bytes([slot])) + tlv(0xC2, bytes([alg])) + tlv(0xC6, challenge))


def write_cert(fid: int, der: bytes) -> bytes:
    return dgi(0x0103, tlv(0xC7, fid.to_bytes(2, "big")) + tlv(0xC8, der))


def set_pin(ref: int, value: bytes) -> bytes:
    return dgi(0x0104, tlv(0xC9, bytes([ref])) + tlv(0xCA, value))


def build(alg: int) -> dict:
    applet = JpkiApplet()
    challenge = os.urandom(32)
    out, sw = perso(applet, gen(1, alg, challenge), gen(2, alg, challenge))
    assert sw == 0x9000
    # both answers share DGI 0101: PROVE KEY reads each slot's key back
    out1, _ = perso(applet, dgi(0x0102, tlv(0xC1, b"\x01") + tlv(0xC6, challenge)))
    out2, _ = perso(applet, dgi(0x0102, tlv(0xC1, b"\x02") + tlv(0xC6, challenge)))
    spki = {1: fields(out1[0x0102])[0xC3], 2: fields(out2[0x0102])[0xC3]}
    ca_spki = _CA_KEY.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    certs = {
        0x000A: cert_for(spki[1], "auth"),
        0x0001: cert_for(spki[2], "sign"),
        0x000B: cert_for(ca_spki, "auth CA"),
        0x0002: cert_for(ca_spki, "sign CA"),
    }
    _, sw = perso(
        applet,
        *(write_cert(fid, der) for fid, der in certs.items()),
        set_pin(1, PIN),
        set_pin(2, PASSWORD),
        dgi(0x0105, tlv(0xCA, PUK)),
    )
    assert sw == 0x9000
    return {"snapshot": applet.snapshot(), "spki": spki, "certs": certs}


@pytest.fixture(scope="module")
def rsa_card() -> dict:
    return build(0x01)


@pytest.fixture(scope="module")
def ec_card() -> dict:
    return build(0x02)


def fresh(card: dict) -> JpkiApplet:
    applet = JpkiApplet()
    applet.restore(card["snapshot"])
    assert applet.select(0x0C, PLAIN) == b"\x90\x00"
    return applet


def select_ef(applet, fid: int) -> int:
    return apdu(applet, bytes.fromhex("00A4020C02") + fid.to_bytes(2, "big"))[1]


def verify(applet, ef: int, value: bytes) -> int:
    assert select_ef(applet, ef) == 0x9000
    return apdu(applet, bytes([0, 0x20, 0, 0x80, len(value)]) + value)[1]


def query(applet, ef: int) -> int:
    assert select_ef(applet, ef) == 0x9000
    return apdu(applet, "00200080")[1]


def opensc_read(applet, fid: int) -> bytes:
    """card-jpki.c / card.c: 4-byte probe, then the size in chunks of at most 256."""
    assert select_ef(applet, fid) == 0x9000
    head, sw = apdu(applet, "00B0000004")
    assert sw == 0x9000 and head[:2] == b"\x30\x82"
    size = int.from_bytes(head[2:4], "big") + 4
    out = b""
    while len(out) < size:
        n = min(256, size - len(out))
        chunk, sw = apdu(applet, bytes([0, 0xB0, len(out) >> 8, len(out) & 0xFF, n & 0xFF]))
        assert sw == 0x9000 and len(chunk) == n
        out += chunk
    return out


def sign(applet, key_ef: int, data: bytes, p1: int = 0) -> tuple[bytes, int]:
    assert select_ef(applet, key_ef) == 0x9000
    return apdu(applet, bytes([0x80, 0x2A, p1, 0x80, len(data)]) + data + b"\x00")


def rsa_pub(card, slot):
    return serialization.load_der_public_key(card["spki"][slot])


# --- registry and AID ---------------------------------------------------------------------


def test_registry_exposes_the_jpki_module_and_the_card_aid():
    assert APPLET_CLASSES[JPKI_MODULE_AID] is JpkiApplet
    assert JPKI_INSTANCE_AID == bytes.fromhex("D392F000260100000001")
    assert JPKI_MODULE_AID[0] == 0xF0


# --- files --------------------------------------------------------------------------------


def test_token_info_label_and_layout(rsa_card):
    a = fresh(rsa_card)
    assert select_ef(a, 0x0006) == 0x9000
    label, sw = apdu(a, "00B0000020")
    assert sw == 0x9000 and label == b"JPKIAPGPSETOKEN".ljust(32, b" ")
    whole, sw = apdu(a, "00B0000000")  # Le=00 asks 256, the file has 160
    assert sw == 0x9000 and len(whole) == 160
    assert whole[96:100] == bytes.fromhex("0000040D")
    assert apdu(a, "00B000A001")[1] == 0x6B00  # offset 160: at the end


def test_cert_flags_ef_and_absent_files(rsa_card):
    a = fresh(rsa_card)
    assert select_ef(a, 0x0008) == 0x9000
    assert apdu(a, "00B0000003") == (bytes.fromhex("8F8F00"), 0x9000)
    for fid in (0x3F00, 0x0009, 0x0016, 0x2F00):
        assert select_ef(a, fid) == 0x6A82
    blank = JpkiApplet()
    blank.select(0x0C, PLAIN)
    for fid in (0x0001, 0x0002, 0x000A, 0x000B, 0x0017, 0x001A):
        assert select_ef(blank, fid) == 0x6A82
    assert select_ef(blank, 0x0008) == 0x9000
    assert apdu(blank, "00B0000003") == (b"\x00\x00\x00", 0x9000)


def test_opensc_reads_ca_certificates_in_256_byte_chunks(rsa_card):
    a = fresh(rsa_card)
    for fid in (0x000B, 0x0002):
        der = opensc_read(a, fid)
        assert der == rsa_card["certs"][fid] and len(der) > 256
        offset = len(der)
        assert apdu(a, bytes([0, 0xB0, offset >> 8, offset & 0xFF, 0]))[1] == 0x6B00
    # any Le: min(Le, rest)
    assert select_ef(a, 0x0002) == 0x9000
    tail, sw = apdu(a, bytes([0, 0xB0, (len(der) - 3) >> 8, (len(der) - 3) & 0xFF, 0xFF]))
    assert sw == 0x9000 and tail == der[-3:]


def test_signing_certificate_needs_the_password(rsa_card):
    a = fresh(rsa_card)
    assert select_ef(a, 0x0001) == 0x9000
    assert apdu(a, "00B0000004")[1] == 0x6982
    assert verify(a, 0x001B, PASSWORD) == 0x9000
    assert opensc_read(a, 0x0001) == rsa_card["certs"][0x0001]


def test_auth_certificate_needs_the_pin_on_the_phone_unless_configured_free(rsa_card):
    a = fresh(rsa_card)
    assert select_ef(a, 0x000A) == 0x9000
    assert apdu(a, "00B0000004")[1] == 0x6982
    assert verify(a, 0x0018, PIN) == 0x9000
    assert opensc_read(a, 0x000A) == rsa_card["certs"][0x000A]
    b = fresh(rsa_card)
    assert perso(b, dgi(0x0106, tlv(0xCB, b"\x00")))[1] == 0x9000
    b.select(0x0C, PLAIN)
    assert opensc_read(b, 0x000A) == rsa_card["certs"][0x000A]


def test_class_and_instruction_errors(rsa_card):
    a = fresh(rsa_card)
    assert apdu(a, "00CA9F7F00")[1] == 0x6D00  # GET DATA probe from another driver
    assert apdu(a, "00FF000000")[1] == 0x6D00
    assert apdu(a, "80A4020C020006")[1] == 0x6E00  # ISO INS under a proprietary class
    assert apdu(a, "002A00800100")[1] == 0x6E00  # CDS needs CLA 80
    assert apdu(a, "0CA4020C020006")[1] == 0x6882  # secure messaging
    assert apdu(a, "10A4020C020006")[1] == 0x6884  # chaining
    assert apdu(a, "FFA4020C020006")[1] == 0x6E00
    assert apdu(a, "00A4")[1] == 0x6700
    assert apdu(a, "00A4020C0300")[1] == 0x6700
    assert apdu(a, "00A4040C0AD392F000260100000001")[1] == 0x6A82
    assert apdu(a, "00A40200020006")[1] == 0x6A86


# --- PINs ---------------------------------------------------------------------------------


def test_opensc_bind_gets_63cx_for_both_pins(rsa_card):
    a = fresh(rsa_card)
    assert query(a, 0x0018) == 0x63C3
    assert query(a, 0x001B) == 0x63C5
    assert apdu(a, "0020008000")[1] == 0x6700  # lulitech: appending Le gives 6700
    assert verify(a, 0x0018, PIN) == 0x9000
    assert query(a, 0x0018) == 0x63C3  # still 63Cx when verified
    assert apdu(a, "00200098")[1] == 0x63C3  # myna-card: P2 = 80 | SFI


def test_three_wrong_pins_lock_user_auth_and_the_puk_unlocks(rsa_card):
    a = fresh(rsa_card)
    digest_info = SHA256_DI + hashlib.sha256(b"login").digest()
    assert [verify(a, 0x0018, b"0000") for _ in range(3)] == [0x63C2, 0x63C1, 0x63C0]
    assert verify(a, 0x0018, PIN) == 0x6984
    assert query(a, 0x0018) == 0x63C0
    assert sign(a, 0x0017, digest_info) == (b"", 0x6984)  # a locked key signs nothing
    assert query(a, 0x001B) == 0x63C5  # the other secret is untouched
    # the PUK unblocks and resets the counter, without verifying
    assert select_ef(a, 0x0018) == 0x9000
    assert apdu(a, b"\x00\x2c\x01\x80\x08" + PUK)[1] == 0x9000
    assert query(a, 0x0018) == 0x63C3
    assert sign(a, 0x0017, digest_info)[1] == 0x6982
    assert verify(a, 0x0018, PIN) == 0x9000
    sig, sw = sign(a, 0x0017, digest_info)
    assert sw == 0x9000
    rsa_pub(rsa_card, 1).verify(sig, b"login", padding.PKCS1v15(), hashes.SHA256())


def test_five_wrong_passwords_lock_signing(rsa_card):
    a = fresh(rsa_card)
    assert [verify(a, 0x001B, b"abc123") for _ in range(5)] == [  # lower case costs a try
        0x63C4,
        0x63C3,
        0x63C2,
        0x63C1,
        0x63C0,
    ]
    assert verify(a, 0x001B, PASSWORD) == 0x6984
    assert sign(a, 0x001A, SHA256_DI + bytes(32))[1] == 0x6984
    assert select_ef(a, 0x0001) == 0x9000 and apdu(a, "00B0000004")[1] == 0x6982
    # PUK with a new password (P1=00: PUK || new)
    assert select_ef(a, 0x001B) == 0x9000
    assert apdu(a, bytes([0, 0x2C, 0, 0x80, 14]) + PUK + b"NEWPW1")[1] == 0x9000
    assert verify(a, 0x001B, PASSWORD) == 0x63C4
    assert verify(a, 0x001B, b"NEWPW1") == 0x9000
    assert query(a, 0x001B) == 0x63C5


def test_a_secret_never_set_is_not_found_not_locked(rsa_card):
    """An applet installed but not personalised (a provisioning that stopped before SET PIN)
    answered 6984 to VERIFY, as a locked secret does, and 63C3 / 63C5 to the retry query, as
    an untouched one: the host told the holder to unblock with a PUK there never was. A
    secret never set is 6A88, referenced data not found, to every command that uses it; a
    locked one stays 6984."""
    blank = JpkiApplet()
    assert blank.select(0x0C, PLAIN) == b"\x90\x00"
    for ef in (0x0018, 0x001B):
        assert query(blank, ef) == 0x6A88
        assert verify(blank, ef, PIN if ef == 0x0018 else PASSWORD) == 0x6A88
        assert apdu(blank, bytes([0, 0x24, 1, 0x80, 4]) + b"5678")[1] == 0x6A88  # CHANGE REFERENCE DATA
        assert apdu(blank, b"\x00\x2c\x01\x80\x08" + PUK)[1] == 0x6A88  # RESET RETRY COUNTER
    assert blank.describe()["secrets"]["puk"]["tries_left"] == 10  # nothing was counted
    # the PIN set but not the PUK: unblocking names the PUK as not found, spends nothing
    perso(blank, set_pin(1, PIN))
    assert query(blank, 0x0018) == 0x63C3 and verify(blank, 0x0018, PIN) == 0x9000
    assert select_ef(blank, 0x0018) == 0x9000
    assert apdu(blank, b"\x00\x2c\x01\x80\x08" + PUK)[1] == 0x6A88
    # a locked secret is still 6984
    a = fresh(rsa_card)
    assert [verify(a, 0x0018, b"0000") for _ in range(3)][-1] == 0x63C0
    assert verify(a, 0x0018, PIN) == 0x6984 and query(a, 0x0018) == 0x63C0


def test_correct_pin_resets_the_counter(rsa_card):
    a = fresh(rsa_card)
    assert verify(a, 0x0018, b"9999") == 0x63C2
    assert verify(a, 0x0018, PIN) == 0x9000
    assert query(a, 0x0018) == 0x63C3


def test_wrong_puk_counts_and_blocks(rsa_card):
    a = fresh(rsa_card)
    for _ in range(3):
        verify(a, 0x0018, b"0000")
    assert select_ef(a, 0x0018) == 0x9000
    sws = [apdu(a, b"\x00\x2c\x01\x80\x08" + b"00000000")[1] for _ in range(10)]
    assert sws == [0x63C0 | n for n in range(9, -1, -1)]
    assert apdu(a, b"\x00\x2c\x01\x80\x08" + PUK)[1] == 0x6984
    assert query(a, 0x0018) == 0x63C0
    assert apdu(a, b"\x00\x2c\x01\x80\x04" + PUK[:4])[1] == 0x6700
    assert apdu(a, b"\x00\x2c\x02\x80\x08" + PUK)[1] == 0x6A86


def test_puk_success_resets_its_own_counter(rsa_card):
    a = fresh(rsa_card)
    assert select_ef(a, 0x0018) == 0x9000
    assert apdu(a, b"\x00\x2c\x01\x80\x08" + b"11111111")[1] == 0x63C9
    assert apdu(a, b"\x00\x2c\x01\x80\x08" + PUK)[1] == 0x9000
    assert a.describe()["secrets"]["puk"]["tries_left"] == 10


def test_change_reference_data(rsa_card):
    a = fresh(rsa_card)
    assert select_ef(a, 0x0018) == 0x9000
    assert apdu(a, "002401800435353535")[1] == 0x6982  # VERIFY the old one first
    assert verify(a, 0x0018, PIN) == 0x9000
    assert apdu(a, "00240180053535353535")[1] == 0x6A80  # 5 digits
    assert apdu(a, "002400800435353535")[1] == 0x6A86
    assert apdu(a, "002401800435353535")[1] == 0x9000
    assert verify(a, 0x0018, PIN) == 0x63C2
    assert verify(a, 0x0018, b"5555") == 0x9000


def test_verified_state_is_volatile(rsa_card):
    a = fresh(rsa_card)
    digest_info = SHA256_DI + bytes(32)
    assert verify(a, 0x001B, PASSWORD) == 0x9000
    assert sign(a, 0x001A, digest_info)[1] == 0x9000
    a.select(0x0C, PLAIN)  # new SELECT of the AP
    assert sign(a, 0x001A, digest_info)[1] == 0x6982
    assert verify(a, 0x001B, PASSWORD) == 0x9000
    a.deselect(PLAIN)
    a.select(0x0C, PLAIN)
    assert sign(a, 0x001A, digest_info)[1] == 0x6982


# --- signatures ---------------------------------------------------------------------------


def test_opensc_sha256_rsa_pkcs_signature_verifies(rsa_card):
    a = fresh(rsa_card)
    message = b"document to sign"
    assert sign(a, 0x001A, SHA256_DI + hashlib.sha256(message).digest())[1] == 0x6982
    assert verify(a, 0x001B, PASSWORD) == 0x9000
    sig, sw = sign(a, 0x001A, SHA256_DI + hashlib.sha256(message).digest())
    assert sw == 0x9000 and len(sig) == 256
    rsa_pub(rsa_card, 2).verify(sig, message, padding.PKCS1v15(), hashes.SHA256())
    # the certificate on the card certifies the very same key
    cert = x509.load_der_x509_certificate(rsa_card["certs"][0x0001])
    cert.public_key().verify(sig, message, padding.PKCS1v15(), hashes.SHA256())
    # myna-card names the key in P2 without a SELECT
    sig2, sw = apdu(a, b"\x80\x2a\x00\x9a\x33" + SHA256_DI + hashlib.sha256(message).digest())
    assert sw == 0x9000 and sig2 == sig  # PKCS #1 v1.5 is deterministic
    assert apdu(a, b"\x80\x2a\x00\x97\x33" + SHA256_DI + bytes(32))[1] == 0x6982


def test_rsa_signature_schemes_by_p1(rsa_card):
    a = fresh(rsa_card)
    pub = rsa_pub(rsa_card, 1)
    assert verify(a, 0x0018, PIN) == 0x9000
    msg = b"scheme test"
    h = hashlib.sha256(msg).digest()
    sig, sw = sign(a, 0x0017, msg, 0x01)
    assert sw == 0x9000
    pub.verify(sig, h, padding.PKCS1v15(), NoDigestInfo())
    sig, _ = sign(a, 0x0017, h, 0x02)
    pub.verify(sig, h, padding.PKCS1v15(), Prehashed(hashes.SHA256()))
    sig, _ = sign(a, 0x0017, msg, 0x03)
    pub.verify(sig, msg, padding.PKCS1v15(), hashes.SHA256())
    pss = padding.PSS(padding.MGF1(hashes.SHA256()), 32)
    sig, _ = sign(a, 0x0017, h, 0x04)
    pub.verify(sig, h, pss, Prehashed(hashes.SHA256()))
    sig, _ = sign(a, 0x0017, msg, 0x05)
    pub.verify(sig, msg, pss, hashes.SHA256())
    assert sign(a, 0x0017, msg, 0x06)[1] == 0x6A86
    assert sign(a, 0x0017, h[:31], 0x02)[1] == 0x6700
    assert sign(a, 0x0017, bytes(246), 0x00)[1] == 0x6700
    assert select_ef(a, 0x0006) == 0x9000
    assert apdu(a, b"\x80\x2a\x00\x80\x01\x00\x00")[1] == 0x6A88  # current EF is no key
    # INTERNAL AUTHENTICATE behaves as scheme 00 behind the same PIN
    sig, sw = apdu(a, b"\x00\x88\x00\x97\x33" + SHA256_DI + h + b"\x00")
    assert sw == 0x9000
    pub.verify(sig, msg, padding.PKCS1v15(), hashes.SHA256())


def test_p384_signature_is_raw_r_s(ec_card):
    a = fresh(ec_card)
    pub = serialization.load_der_public_key(ec_card["spki"][2])
    assert isinstance(pub.curve, ec.SECP384R1)
    assert verify(a, 0x001B, PASSWORD) == 0x9000
    msg = b"next card"
    for data, hash_alg in (
        (SHA384_DI + hashlib.sha384(msg).digest(), hashes.SHA384()),
        (SHA256_DI + hashlib.sha256(msg).digest(), hashes.SHA256()),
        (hashlib.sha384(msg).digest(), hashes.SHA384()),
    ):
        sig, sw = sign(a, 0x001A, data)
        assert sw == 0x9000 and len(sig) == 96
        der = encode_dss_signature(int.from_bytes(sig[:48], "big"), int.from_bytes(sig[48:], "big"))
        pub.verify(der, msg, ec.ECDSA(hash_alg))
    assert sign(a, 0x001A, msg, 0x04)[1] == 0x6A86
    assert sign(a, 0x001A, b"\x30" * 40)[1] == 0x6A80


# --- personalisation ----------------------------------------------------------------------


@pytest.mark.parametrize("alg", [0x01, 0x02])
def test_generate_key_answers_spki_and_a_verifiable_proof(alg):
    a = JpkiApplet()
    challenge = os.urandom(32)
    out, sw = perso(a, gen(2, alg, challenge))
    assert sw == 0x9000
    f = fields(out[0x0101])
    spki, pop = f[0xC3], f[0xC4]
    assert f[0xC1] == b"\x02" and f[0xC2] == bytes([alg])
    assert f[0xC5] == hashlib.sha256(spki).digest()
    pub = serialization.load_der_public_key(spki)
    if alg == 0x01:
        assert pub.key_size == 2048
        pub.verify(pop, challenge + spki, padding.PKCS1v15(), hashes.SHA256())
    else:
        pub.verify(pop, challenge + spki, ec.ECDSA(hashes.SHA384()))
    # PROVE KEY answers the same key for a new challenge, without regenerating
    c2 = os.urandom(16)
    out2, sw = perso(a, dgi(0x0102, tlv(0xC1, b"\x02") + tlv(0xC6, c2)))
    assert sw == 0x9000 and fields(out2[0x0102])[0xC3] == spki
    assert perso(a, dgi(0x0102, tlv(0xC1, b"\x01") + tlv(0xC6, c2)))[1] == 0x6A88


def test_read_state_reports_what_a_tsm_needs(rsa_card):
    a = fresh(rsa_card)
    out, sw = perso(a, dgi(0x0100, b""))
    assert sw == 0x9000
    items = parse_tlvs(out[0x0100])
    keys = [fields(v) for t, v in items if t == 0xE1]
    assert {k[0xC1][0]: k[0xC5] for k in keys} == {
        s: hashlib.sha256(spki).digest() for s, spki in rsa_card["spki"].items()
    }
    certs = {int.from_bytes(fields(v)[0xC7], "big") for t, v in items if t == 0xE2}
    assert certs == {0x0001, 0x0002, 0x000A, 0x000B}
    secrets = {fields(v)[0xC9][0]: fields(v) for t, v in items if t == 0xE3}
    assert {r: (s[0xCC], s[0xCD], s[0xCE]) for r, s in secrets.items()} == {
        1: (b"\x01", b"\x03", b"\x03"),
        2: (b"\x01", b"\x05", b"\x05"),
        3: (b"\x01", b"\x0a", b"\x0a"),
    }
    blank = JpkiApplet()
    out, _ = perso(blank, dgi(0x0100, b""))
    assert not [t for t, _ in parse_tlvs(out[0x0100]) if t in (0xE1, 0xE2)]


def test_regenerating_a_slot_replaces_the_key_and_clears_its_certificate(ec_card):
    a = fresh(ec_card)
    out, sw = perso(a, gen(1, 0x02, os.urandom(16)))
    assert sw == 0x9000 and fields(out[0x0101])[0xC3] != ec_card["spki"][1]
    assert select_ef(a, 0x000A) == 0x6A82
    assert select_ef(a, 0x0001) == 0x9000  # the other slot keeps its certificate
    assert select_ef(a, 0x0008) == 0x9000 and apdu(a, "00B0000003")[0] == bytes.fromhex("8F0000")


def test_personalisation_refusals_change_nothing(rsa_card):
    a = fresh(rsa_card)
    before = a.snapshot()
    other = ec.generate_private_key(ec.SECP384R1()).public_key()
    other_spki = other.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    refusals = [
        (perso(a, set_pin(1, b"9999"), ctx=PLAIN), 0x6982),  # no secure channel
        (perso(a, set_pin(1, b"9999"), ctx=CommandContext(True, 0, 0x01)), 0x6982),  # no C-DEC
        (perso(a, set_pin(1, b"12345")), 0x6A80),
        (perso(a, set_pin(2, b"abc123")), 0x6A80),
        (perso(a, set_pin(2, b"ABC12")), 0x6A80),
        (perso(a, dgi(0x0105, tlv(0xCA, b"1234567"))), 0x6A80),
        (perso(a, write_cert(0x0001, cert_for(other_spki, "x"))), 0x6A80),  # wrong key
        (perso(a, write_cert(0x0006, rsa_card["certs"][0x0002])), 0x6A80),
        (perso(a, write_cert(0x0002, b"\x30\x03\x02\x01\x00")), 0x6A80),
        (perso(a, gen(1, 0x07, bytes(16))), 0x6A80),
        (perso(a, gen(3, 0x01, bytes(16))), 0x6A80),
        (perso(a, gen(1, 0x01, bytes(8))), 0x6A80),
        (perso(a, dgi(0x0999, b"")), 0x6A88),
        # atomic: a good record followed by a bad one leaves nothing behind
        (perso(a, set_pin(1, b"9999"), set_pin(2, b"x")), 0x6A80),
        (perso(a, dgi(0x0107, tlv(0xC7, b"\x00\x01")), dgi(0x0100, b"\x00")), 0x6A80),
    ]
    for (_, sw), expected in refusals:
        assert sw == expected
    assert a.snapshot() == before
    blank = JpkiApplet()
    assert perso(blank, write_cert(0x0001, rsa_card["certs"][0x0001]))[1] == 0x6985


def test_store_data_block_numbering(rsa_card):
    a = fresh(rsa_card)
    before = a.snapshot()
    record = write_cert(0x0002, rsa_card["certs"][0x000B])
    assert a.store_data(0x08, 0, record[:100], SCP) == b"\x90\x00"
    assert a.store_data(0x88, 2, record[100:], SCP) == b"\x6a\x86"  # block 1 skipped
    assert a.snapshot() == before
    assert a.store_data(0xE8, 0, record, SCP) == b"\x6a\x86"  # encrypted DGIs
    assert a.store_data(0x90, 0, record, SCP) == b"\x6a\x86"  # BER-TLV structure
    # a retry restarts from block 00 and the record spans three blocks
    a.store_data(0x08, 0, record[:100], SCP)
    assert perso(a, record, block=100)[1] == 0x9000
    a.select(0x0C, PLAIN)
    assert opensc_read(a, 0x0002) == rsa_card["certs"][0x000B]


# --- persistence and description ----------------------------------------------------------


def test_snapshot_round_trip_keeps_behaviour(rsa_card):
    a = fresh(rsa_card)
    verify(a, 0x0018, b"0000")
    image = cbor2.loads(cbor2.dumps(a.snapshot()))
    assert PIN not in cbor2.dumps(image) and PASSWORD not in cbor2.dumps(image)
    b = JpkiApplet()
    b.restore(image)
    b.select(0x0C, PLAIN)
    assert query(b, 0x0018) == 0x63C2
    assert verify(b, 0x0018, PIN) == 0x9000
    sig, sw = sign(b, 0x0017, SHA256_DI + hashlib.sha256(b"x").digest())
    assert sw == 0x9000
    rsa_pub(rsa_card, 1).verify(sig, b"x", padding.PKCS1v15(), hashes.SHA256())
    assert b.snapshot() == cbor2.loads(cbor2.dumps(b.snapshot()))


@pytest.mark.parametrize(
    "image",
    [None, {}, {"version": 2}, {"version": 1, "serial": 5}, {"version": 1, "serial": "A"}],
)
def test_restore_refuses_foreign_images(image):
    with pytest.raises(AppletStateError):
        JpkiApplet().restore(image)


def test_restore_refuses_a_key_that_does_not_match(rsa_card):
    image = dict(rsa_card["snapshot"])
    keys = dict(image["keys"])
    keys[1] = {**keys[1], "spki": keys[2]["spki"]}
    with pytest.raises(AppletStateError):
        JpkiApplet().restore({**image, "keys": keys})


def test_describe_shows_public_facts_only(rsa_card):
    a = fresh(rsa_card)
    info = a.describe()
    assert info["token_label"] == "JPKIAPGPSETOKEN"
    assert info["secrets"]["user_auth_pin"] == {
        "set": True,
        "tries_left": 3,
        "max_tries": 3,
        "blocked": False,
    }
    assert info["slots"]["signing"]["algorithm"] == "rsa2048"
    assert info["certificates"]["0001"]["subject"] == "CN=sign"
    for k in a.snapshot()["keys"].values():
        assert k["pkcs8"].hex() not in repr(info)
    assert "ABC123" not in repr(info) and "12345678" not in repr(info)


# --- fuzzing ------------------------------------------------------------------------------

_INS = [0xA4, 0xB0, 0x20, 0x24, 0x2C, 0x2A, 0x88, 0xCA, 0x00]
structured = st.builds(
    lambda cla, ins, p1, p2, body: bytes([cla, ins, p1, p2]) + body,
    st.sampled_from([0x00, 0x80, 0x01, 0x0C, 0x10, 0xFF, 0x40]),
    st.sampled_from(_INS),
    st.integers(0, 255),
    st.sampled_from([0x00, 0x0C, 0x80, 0x97, 0x98, 0x9A, 0x9B, 0x01]),
    st.one_of(
        st.just(b""),
        st.binary(max_size=1),
        st.binary(min_size=1, max_size=40).map(lambda d: bytes([len(d)]) + d),
        st.binary(min_size=1, max_size=40).map(lambda d: bytes([len(d)]) + d + b"\x00"),
        st.binary(max_size=300),
    ),
)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    prefix=st.sampled_from([b"", b"\x00\xa4\x02\x0c\x02\x00\x18", b"\x00\xa4\x02\x0c\x02\x00\x17"]),
    apdus=st.lists(st.one_of(structured, st.binary(max_size=300)), min_size=1, max_size=4),
)
def test_fuzzed_apdus_answer_a_status_word_and_only_valid_ones_change_state(
    rsa_card, prefix, apdus
):
    a = fresh(rsa_card)
    if prefix:
        apdu(a, prefix)
    secret_bytes = [k["pkcs8"] for k in rsa_card["snapshot"]["keys"].values()]
    for raw in apdus:
        before = a.snapshot()
        out = a.process(raw, PLAIN)
        assert isinstance(out, bytes) and len(out) >= 2
        sw = int.from_bytes(out[-2:], "big")
        if sw != 0x9000 and sw & 0xFFF0 != 0x63C0:
            assert out == out[-2:] and a.snapshot() == before
        assert not any(s in out for s in secret_bytes)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    p1=st.integers(0, 255), p2=st.integers(0, 3), data=st.binary(max_size=80), secure=st.booleans()
)
def test_fuzzed_store_data_never_raises_and_refusals_change_nothing(rsa_card, p1, p2, data, secure):
    a = fresh(rsa_card)
    before = a.snapshot()
    ctx = SCP if secure else PLAIN
    out = a.store_data(p1, p2, data, ctx)
    sw = int.from_bytes(out[-2:], "big")
    if sw != 0x9000 or not p1 & 0x80:
        assert a.snapshot() == before


# --- PIN checks found unheld by mutation testing ------------------------------------------


def test_verify_with_p1_other_than_00_is_refused_before_the_pin_is_compared(rsa_card):
    """VERIFY P1 01 (or any but 00) is 6A86 whatever the data: a wrong PIN sent that way
    costs no try, and a right one verifies nothing."""
    a = fresh(rsa_card)
    assert select_ef(a, 0x0018) == 0x9000
    assert apdu(a, b"\x00\x20\x01\x80\x04" + b"0000")[1] == 0x6A86
    assert apdu(a, b"\x00\x20\x01\x80\x04" + PIN)[1] == 0x6A86
    assert query(a, 0x0018) == 0x63C3
    assert sign(a, 0x0017, SHA256_DI + bytes(32))[1] == 0x6982


def test_a_wrong_verify_after_a_right_one_drops_the_verification(rsa_card):
    """ISO/IEC 7816-4: a failed VERIFY resets the security status of that reference. A
    holder's session verified, then anyone's wrong guess on it: the key signs no more
    until the PIN is presented again."""
    a = fresh(rsa_card)
    digest_info = SHA256_DI + bytes(32)
    assert verify(a, 0x0018, PIN) == 0x9000
    assert sign(a, 0x0017, digest_info)[1] == 0x9000
    assert verify(a, 0x0018, b"0000") == 0x63C2
    assert sign(a, 0x0017, digest_info)[1] == 0x6982


def test_a_pin_blocked_from_another_channel_cannot_be_changed_with_an_older_verification(rsa_card):
    """Channel 0 verified the PIN; wrong guesses on channel 1 then block it. CHANGE
    REFERENCE DATA on channel 0 is 6984: a new PIN (with a fresh counter) would unblock it
    without the PUK."""
    a = fresh(rsa_card)
    ch1 = CommandContext(channel=1)
    assert verify(a, 0x0018, PIN) == 0x9000
    assert a.select(0x0C, ch1) == b"\x90\x00"
    for _ in range(3):
        apdu(a, b"\x00\x20\x00\x98\x04" + b"0000", ch1)
    assert apdu(a, "00200098", ch1)[1] == 0x63C0
    assert apdu(a, b"\x00\x24\x01\x98\x04" + b"5555")[1] == 0x6984
    assert apdu(a, "00200098")[1] == 0x63C0
    assert apdu(a, b"\x00\x20\x00\x98\x04" + b"5555")[1] == 0x6984


@pytest.mark.parametrize("command", [
    b"\x00\x2c\x01\x98\x0c" + PUK + b"5555",  # P1 01 (PUK only) with a new PIN after it
    b"\x00\x2c\x00\x98\x08" + PUK,  # P1 00 (PUK || new) without the new PIN
])
def test_reset_retry_counter_data_must_match_its_p1(rsa_card, command):
    """RESET RETRY COUNTER: P1 01 carries the PUK alone, P1 00 the PUK and the new value;
    anything else is 6700 and changes nothing (neither the PIN nor any counter)."""
    a = fresh(rsa_card)
    for _ in range(3):
        verify(a, 0x0018, b"0000")
    assert apdu(a, command)[1] == 0x6700
    assert apdu(a, "00200098")[1] == 0x63C0
    assert a.describe()["secrets"]["puk"]["tries_left"] == 10


@pytest.mark.parametrize("new", [b"123", b"12345", b"12a4", b"\xef\xbc\x91234"])
def test_reset_retry_counter_refuses_a_new_pin_that_breaks_the_format(rsa_card, new):
    a = fresh(rsa_card)
    command = bytes([0, 0x2C, 0x00, 0x98, 8 + len(new)]) + PUK + new
    assert apdu(a, command)[1] == 0x6A80
    assert verify(a, 0x0018, PIN) == 0x9000  # the PIN is the one it was
    assert a.describe()["secrets"]["puk"]["tries_left"] == 10


def test_the_puk_does_not_set_a_pin_that_was_never_set():
    """Only the PUK personalised: RESET RETRY COUNTER naming the PIN is 6A88 (never set),
    not a way to choose the first PIN outside personalisation (C-DECRYPTION)."""
    blank = JpkiApplet()
    assert blank.select(0x0C, PLAIN) == b"\x90\x00"
    assert perso(blank, dgi(0x0105, tlv(0xCA, PUK)))[1] == 0x9000
    assert apdu(blank, b"\x00\x2c\x00\x98\x0c" + PUK + b"5555")[1] == 0x6A88
    assert apdu(blank, b"\x00\x2c\x01\x98\x08" + PUK)[1] == 0x6A88
    assert query(blank, 0x0018) == 0x6A88


def test_signing_key_references_that_name_no_usable_key_are_refused(rsa_card):
    """COMPUTE DIGITAL SIGNATURE with P2 80 and no current EF is 6986; a P2 naming no key
    slot is 6A86; a slot without a key (personalisation not done) is 6A88: each an answer,
    none an applet fault."""
    a = fresh(rsa_card)
    data = SHA256_DI + bytes(32)
    assert apdu(a, bytes([0x80, 0x2A, 0, 0x80, len(data)]) + data + b"\x00")[1] == 0x6986
    assert verify(a, 0x0018, PIN) == 0x9000
    assert apdu(a, bytes([0x80, 0x2A, 0, 0x99, len(data)]) + data + b"\x00")[1] == 0x6A86
    assert apdu(a, bytes([0x00, 0x88, 0, 0x99, len(data)]) + data + b"\x00")[1] == 0x6A86
    keyless = JpkiApplet()
    assert keyless.select(0x0C, PLAIN) == b"\x90\x00"
    assert perso(keyless, set_pin(1, PIN))[1] == 0x9000
    assert verify(keyless, 0x0018, PIN) == 0x9000
    assert apdu(keyless, bytes([0x80, 0x2A, 0, 0x97, len(data)]) + data + b"\x00")[1] == 0x6A88


# --- READ BINARY's and INTERNAL AUTHENTICATE's refusals (mutation testing, second round) ---


@pytest.mark.parametrize(("command", "sw"), [
    ("00B0810000", 0x6A81),  # P1 b8 set: a short EF identifier, not supported
    ("00B0000001AA00", 0x6700),  # case 4: READ BINARY carries no data
    ("00B0000001AA", 0x6700),  # case 3
    ("00B00000", 0x6700),  # case 1: no Le
])
def test_read_binary_is_case_2_with_an_offset_only(rsa_card, command, sw):
    """READ BINARY `00 B0 P1 P2 Le` (specs/jpki-applet.md section 2, ISO/IEC 7816-4):
    P1 b8 would name a short EF identifier (6A81, not supported); a data field or a missing
    Le is a wrong length (6700). The token info EF, which anyone may read, is current."""
    a = fresh(rsa_card)
    assert select_ef(a, 0x0006) == 0x9000
    assert apdu(a, command)[1] == sw
    assert apdu(a, "00B0000004")[1] == 0x9000


def test_read_binary_needs_a_current_transparent_ef(rsa_card):
    """Without a current EF READ BINARY is 6986 (no current EF); a PIN EF (as a key EF)
    is an internal EF, never read (6981, command incompatible with the file structure)."""
    a = fresh(rsa_card)
    assert apdu(a, "00B0000004")[1] == 0x6986
    for ef in (0x0018, 0x001B, 0x0017, 0x001A):
        assert select_ef(a, ef) == 0x9000
        assert apdu(a, "00B0000004")[1] == 0x6981, hex(ef)
    assert verify(a, 0x0018, PIN) == 0x9000  # not even with the PIN verified
    assert select_ef(a, 0x0018) == 0x9000
    assert apdu(a, "00B0000004")[1] == 0x6981


def test_internal_authenticate_takes_p1_00_only(rsa_card):
    """INTERNAL AUTHENTICATE (00 88 00 P2): P1 00 (no algorithm reference) is the only form
    (6A86 otherwise), refused before the key is used."""
    a = fresh(rsa_card)
    assert verify(a, 0x0018, PIN) == 0x9000
    data = SHA256_DI + bytes(32)
    assert apdu(a, bytes([0x00, 0x88, 0x01, 0x97, len(data)]) + data + b"\x00")[1] == 0x6A86
    sig, sw = apdu(a, bytes([0x00, 0x88, 0x00, 0x97, len(data)]) + data + b"\x00")
    assert sw == 0x9000 and len(sig) == 256


def test_a_store_data_block_outside_a_secure_channel_drops_the_sequence(rsa_card):
    """STORE DATA reaches the applet only through the ISD's secure channel (GPCS 11.11):
    a block without one is refused (6982) and ends the sequence under way, so its next
    block (01) is out of sequence (6A86) and nothing is written."""
    a = fresh(rsa_card)
    before = a.snapshot()
    record = write_cert(0x0002, rsa_card["certs"][0x000B])
    assert a.store_data(0x08, 0, record[:100], SCP) == b"\x90\x00"
    assert a.store_data(0x08, 1, record[100:200], PLAIN) == b"\x69\x82"
    assert a.store_data(0x88, 1, record[100:], SCP) == b"\x6a\x86"
    assert a.snapshot() == before


def test_store_data_refusals_end_the_sequence_under_way(rsa_card):
    """GPCS 11.11: P1 b3-b1 are RFU and b7-b6 (encryption) are not supported here
    (6A86); a block out of order is 6A86. Each refusal drops the sequence, so the block
    that would have come next is out of sequence too; and a sequence that ended (P1 b8)
    is not continued by a block 01."""
    a = fresh(rsa_card)
    before = a.snapshot()
    record = write_cert(0x0002, rsa_card["certs"][0x000B])
    for p1, p2 in ((0x89, 1), (0x48, 1), (0x08, 2)):
        assert a.store_data(0x08, 0, record[:100], SCP) == b"\x90\x00"
        assert a.store_data(p1, p2, record[100:200], SCP) == b"\x6a\x86"
        assert a.store_data(0x88, 1, record[100:], SCP) == b"\x6a\x86"
    assert a.store_data(0x88, 0, dgi(0x0100, b""), SCP)[-2:] == b"\x90\x00"  # READ STATE, whole
    assert a.store_data(0x88, 1, dgi(0x0100, b""), SCP) == b"\x6a\x86"
    assert a.snapshot() == before


def test_a_store_data_sequence_holds_at_most_32_kib(rsa_card):
    """The JPKI applet collects at most 32768 bytes per STORE DATA sequence (then 6A84,
    not enough memory, and the sequence is dropped): exactly 32768 is taken."""
    a = fresh(rsa_card)
    block = bytes(256)
    for n in range(127):
        assert a.store_data(0x08, n, block, SCP) == b"\x90\x00"
    assert a.store_data(0x08, 127, block, SCP) == b"\x90\x00"  # 32768 bytes
    assert a.store_data(0x08, 128, b"\x00", SCP) == b"\x6a\x84"
    assert a.store_data(0x88, 128, b"", SCP) == b"\x6a\x86"  # the sequence is gone


def test_compute_digital_signature_input_rules(rsa_card, ec_card):
    """specs/jpki-applet.md section 3: nothing to sign is 6700; RSA P1 00 (PKCS #1 v1.5 over
    the data as given) takes at most 245 bytes (k - 11 for 2048 bits); P-384 P1 02 takes a
    32-byte SHA-256 hash (6700 otherwise) and signs it as given, P1 03 hashes the data with
    SHA-256 first; P1 00 takes a DigestInfo or a bare hash, nothing else (6A80)."""
    from cryptography.hazmat.primitives.asymmetric import ec, utils

    a = fresh(rsa_card)
    assert verify(a, 0x0018, PIN) == 0x9000
    assert select_ef(a, 0x0017) == 0x9000
    assert apdu(a, "802A008000")[1] == 0x6700
    sig, sw = sign(a, 0x0017, bytes(range(245)))
    assert sw == 0x9000
    # PKCS #1 v1.5 type 1 padding over the 245 bytes as given: 00 01 FF .. FF 00 || data
    assert pow(int.from_bytes(sig, "big"), 65537, rsa_pub(rsa_card, 1).public_numbers().n).to_bytes(256, "big") \
        .endswith(b"\x00" + bytes(range(245)))
    assert sign(a, 0x0017, bytes(246))[1] == 0x6700

    e = fresh(ec_card)
    assert verify(e, 0x0018, PIN) == 0x9000
    key = serialization.load_der_public_key(ec_card["spki"][1])
    digest = hashlib.sha256(b"JPKI").digest()
    assert sign(e, 0x0017, digest[:31], p1=0x02)[1] == 0x6700
    sig, sw = sign(e, 0x0017, digest, p1=0x02)
    assert sw == 0x9000
    der = utils.encode_dss_signature(int.from_bytes(sig[:48], "big"), int.from_bytes(sig[48:], "big"))
    key.verify(der, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    sig, sw = sign(e, 0x0017, b"JPKI", p1=0x03)
    assert sw == 0x9000
    der = utils.encode_dss_signature(int.from_bytes(sig[:48], "big"), int.from_bytes(sig[48:], "big"))
    key.verify(der, b"JPKI", ec.ECDSA(hashes.SHA256()))
    assert sign(e, 0x0017, os.urandom(51))[1] == 0x6A80  # a DigestInfo's length, not one
    assert sign(e, 0x0017, SHA256_DI + bytes(33))[1] == 0x6A80  # a DigestInfo with 33 bytes
