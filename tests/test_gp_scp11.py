"""SCP11b (GPCS Amendment F): the pure protocol both ways, the SE's certificate store and
INTERNAL AUTHENTICATE, what an unauthenticated host may do, and the SD certificate check."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

import wallet_sim
from protocols.gp.apdu import CommandApdu
from protocols.gp.errors import (
    GpError,
    Scp03MacError,
    Scp11AuthenticationError,
    Scp11CertificateError,
    Scp11ProtocolError,
    Scp11StateError,
)
from protocols.gp.keys import parse_key_information_template, put_key_command
from protocols.gp.scp03 import HostState
from protocols.gp.scp11 import (
    SCP11A_PARAM,
    SCP11B_KID,
    Scp11bCard,
    Scp11bHost,
    certificate_store_query,
    control_reference_template,
    parse_certificate_bundle,
    parse_certificate_store_query,
    parse_internal_authenticate,
    verify_sd_certificate,
)
from protocols.gp.tlv import encode
from wallet_sim.se.maker import SeMaker, root_path, se_maker

ISD_SELECT = bytes.fromhex("00A4040008A000000151000000")


def now() -> dt.datetime:  # at each use: a module's import may come minutes before its tests
    return dt.datetime.now(dt.UTC)


def _pair(key_length: int = 16):
    sk = ec.generate_private_key(ec.SECP256R1())
    card = Scp11bCard(0x01, SCP11B_KID, lambda peer: sk.exchange(ec.ECDH(), peer))
    host = Scp11bHost(sk.public_key(), 0x01, key_length=key_length)
    resp = card.internal_authenticate(CommandApdu.parse(host.internal_authenticate()))
    host.on_internal_authenticate_response(resp)
    return host, card, sk


@settings(max_examples=40, deadline=None)
@given(key_length=st.sampled_from([16, 24, 32]),
       commands=st.lists(st.tuples(st.integers(0, 0xFF), st.sampled_from([0, 1, 15, 16, 17, 255]),
                                   st.sampled_from([0, 1, 15, 16, 17, 200]), st.integers(0x6000, 0x9000)),
                         min_size=1, max_size=4))
def test_host_and_card_agree_at_every_key_length(key_length, commands):
    host, card, _ = _pair(key_length)
    assert host.state is HostState.OPEN and card.is_open and host.receipt is not None
    assert host.key_dek == card.key_dek and len(host.key_dek) == key_length
    assert host.mac_chaining_value == card.mac_chaining_value == host.receipt  # the receipt chains first
    for ins, n, m, sw in commands:
        data = bytes(range(n % 256)) * (n // 256) + bytes(n % 256)
        plain = CommandApdu(0x80, ins if ins not in (0xC0,) else 0xCA, 1, 2, data[:n], 256)
        wrapped = CommandApdu.parse(host.wrap(plain.to_bytes()))
        assert wrapped.cla & 0x04 and (not n or wrapped.data[:-8] != plain.data)  # C-MAC, C-DEC
        got = card.unwrap(wrapped)
        assert (got.ins, got.p1, got.p2, got.data) == (plain.ins, 1, 2, plain.data)
        answer = bytes([0x5A]) * m
        assert host.unwrap(card.wrap_response(answer, sw)) == (
            (answer if sw == 0x9000 or 0x6200 <= sw <= 0x63FF else b"") + sw.to_bytes(2, "big"))


def test_a_card_without_the_certified_key_fails_the_receipt():
    sk, other = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    impostor = Scp11bCard(0x01, SCP11B_KID, lambda peer: other.exchange(ec.ECDH(), peer))
    host = Scp11bHost(sk.public_key(), 0x01)
    resp = impostor.internal_authenticate(CommandApdu.parse(host.internal_authenticate()))
    with pytest.raises(Scp11AuthenticationError, match="does not hold the private key"):
        host.on_internal_authenticate_response(resp)
    assert host.state is HostState.CLOSED
    with pytest.raises(Scp11StateError):
        host.key_dek  # noqa: B018


@pytest.mark.parametrize(("answer", "match"), ids=["refused", "no-sw", "not-tlv", "off-curve", "compressed", "no-key"],
                         argvalues=[
    (b"\x6a\x88", "refused with SW 6A88"),
    (b"\x90", "no status word|bytes"),
    (b"\x01\x02\x90\x00", "answer"),
    (encode(0x5F49, b"\x04" + bytes(64)) + encode(0x86, bytes(16)) + b"\x90\x00", "not a point"),
    (encode(0x5F49, bytes(65)) + encode(0x86, bytes(16)) + b"\x90\x00", "uncompressed"),
    (encode(0x86, bytes(16)) + b"\x90\x00", "is not 5F49"),
])
def test_the_host_refuses_a_bad_answer_and_closes(answer, match):
    host = Scp11bHost(ec.generate_private_key(ec.SECP256R1()).public_key(), 0x01)
    host.internal_authenticate()
    with pytest.raises(GpError, match=match):
        host.on_internal_authenticate_response(answer)
    assert host.state is HostState.CLOSED
    with pytest.raises(Scp11StateError):
        host.on_internal_authenticate_response(answer)  # nothing outstanding any more


def test_a_tampered_command_ends_the_card_session():
    host, card, _ = _pair()
    wrapped = bytearray(host.wrap(bytes.fromhex("80CA00E000")))
    wrapped[-2] ^= 1  # the C-MAC's last byte (Le follows it)
    with pytest.raises(Scp03MacError):
        card.unwrap(CommandApdu.parse(bytes(wrapped)))
    assert not card.is_open


def _ia(data: bytes, p1: int = 0x01, p2: int = SCP11B_KID, cla: int = 0x80) -> bytes:
    return CommandApdu(cla, 0x88, p1, p2, data, 256).to_bytes()


def _epk() -> bytes:
    return encode(0x5F49, ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint))


def _crt(scp=b"\x11\x00", usage=b"\x3c", ktype=b"\x88", klen=b"\x10") -> bytes:
    return encode(0xA6, encode(0x90, scp) + encode(0x95, usage) + encode(0x80, ktype) + encode(0x81, klen))


@pytest.fixture
def home(tmp_path):
    return tmp_path / "home"


@pytest.fixture
def se(home):
    pid = wallet_sim.create_phone(home)
    se = wallet_sim.open_secure_element(pid, home)
    assert se.transmit(ISD_SELECT)[-2:] == b"\x90\x00"
    return se


def _bundle(se) -> list[x509.Certificate]:
    r = se.transmit(CommandApdu(0x80, 0xCA, 0xBF, 0x21, certificate_store_query(), 65536).to_bytes())
    assert r[-2:] == b"\x90\x00"
    return parse_certificate_bundle(r[:-2])


def _open(se) -> Scp11bHost:
    leaf = verify_sd_certificate(_bundle(se), x509.load_pem_x509_certificates(
        root_path(se_home(se)).read_bytes()), at=now())
    host = Scp11bHost(leaf.public_key(), 0x01)
    host.on_internal_authenticate_response(se.transmit(host.internal_authenticate()))
    return host


def se_home(se):
    return se.path.parent.parent.parent


@pytest.mark.parametrize(("data", "p1", "p2", "cla", "sw"), [
    (_crt() + _epk(), 0x02, SCP11B_KID, 0x80, "6A88"),  # no such KVN
    (_crt() + _epk(), 0x01, 0x11, 0x80, "6A88"),  # SCP11a's KID: not on this SE
    (_crt(scp=b"\x11\x01") + _epk(), 0x01, SCP11B_KID, 0x80, "6A80"),  # SCP11a asked
    (_crt(usage=b"\x34") + _epk(), 0x01, SCP11B_KID, 0x80, "6A80"),  # less than full SM
    (_crt(ktype=b"\x80") + _epk(), 0x01, SCP11B_KID, 0x80, "6A80"),  # not AES
    (_crt(klen=b"\x11") + _epk(), 0x01, SCP11B_KID, 0x80, "6A80"),  # 17-byte keys
    (_crt() + encode(0x5F49, b"\x04" + bytes(64)), 0x01, SCP11B_KID, 0x80, "6A80"),  # not on the curve
    (_crt(), 0x01, SCP11B_KID, 0x80, "6A80"),  # no key
    (_crt() + _epk() + b"\x00", 0x01, SCP11B_KID, 0x80, "6A80"),  # trailing byte
    (encode(0xA6, encode(0x90, b"\x11\x00") * 2 + encode(0x95, b"\x3c") + encode(0x80, b"\x88")
            + encode(0x81, b"\x10")) + _epk(), 0x01, SCP11B_KID, 0x80, "6A80"),  # a tag twice
    # the SM bit: not SCP11b's handshake (which opens the session) but a secured command
    # with no session to verify it (found by mutation testing: routed either way, no test saw)
    (_crt() + _epk(), 0x01, SCP11B_KID, 0x84, "6982"),
], ids=["unknown-kvn", "scp11a-kid", "scp11a-asked", "partial-sm", "not-aes", "17-byte-keys", "off-curve",
        "no-key", "trailing-byte", "tag-twice", "sm-bit"])
def test_the_se_refuses_a_bad_internal_authenticate(se, data, p1, p2, cla, sw):
    before = se.path.read_bytes()
    assert se.transmit(_ia(data, p1, p2, cla))[-2:].hex().upper() == sw
    assert se.path.read_bytes() == before  # nothing persisted changed
    # and no session came of it: a secured command is refused in plain terms
    assert se.transmit(bytes.fromhex("84F28002024F00"))[-2:] == b"\x69\x82"


def test_the_se_answers_its_certificate_store_and_yubikit_shape(se, home):
    (leaf,) = _bundle(se)
    kdd = wallet_sim.describe(_pid(se), home)["secure_element"]["key_diversification_data"]
    assert leaf.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value == kdd.upper()
    assert leaf.extensions.get_extension_for_class(x509.KeyUsage).value.key_agreement
    for query, sw in ((certificate_store_query(SCP11B_KID, 0x02), "6A88"),
                      (certificate_store_query(0x11, 0x01), "6A88"), (b"\x83\x02\x13\x01", "6A80"), (b"", "6A80")):
        r = se.transmit(CommandApdu(0x00, 0xCA, 0xBF, 0x21, query, 256).to_bytes())
        assert r[-2:].hex().upper() == sw
    assert parse_certificate_store_query(certificate_store_query(0x13, 0x01)) == (0x13, 0x01)


def _pid(se):
    return se.path.parent.name


def test_openssl_verifies_the_se_certificate_against_its_maker(se, home, tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("no openssl binary")
    (leaf,) = _bundle(se)
    pem = tmp_path / "se.pem"
    pem.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    out = subprocess.run(["openssl", "verify", "-CAfile", str(root_path(home)), str(pem)],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0 and out.stdout.strip().endswith(": OK"), out.stdout + out.stderr


def test_an_unauthenticated_host_changes_nothing_once_the_factory_keys_are_gone(se):
    # while the published factory keyset is on the card, SCP11b grants what it grants
    host = _open(se)
    new = bytes(range(16))
    r = host.unwrap(se.transmit(host.wrap(put_key_command(0x30, 0x31, [new, new, new], host.key_dek).to_bytes())))
    assert r[-2:] == b"\x90\x00"
    # now the card's keys are the TSM's: a second SCP11b session reads, and changes nothing
    se.transmit(ISD_SELECT)
    host = _open(se)
    keys = parse_key_information_template(host.unwrap(se.transmit(host.wrap(bytes.fromhex("80CA00E000"))))[:-2])
    assert {k.kvn for k in keys} == {0x31}
    assert host.unwrap(se.transmit(host.wrap(bytes.fromhex("80F28002024F0000"))))[-2:] == b"\x90\x00"
    before = se.path.read_bytes()
    for cmd in (put_key_command(0x31, 0x31, [bytes(16)] * 3, host.key_dek).to_bytes(),
                bytes.fromhex("80E40000084F06A00000015100"),  # DELETE
                bytes.fromhex("80F0800700"),  # SET STATUS
                bytes.fromhex("80E20000020000")):  # STORE DATA
        assert host.unwrap(se.transmit(host.wrap(cmd)))[-2:] == b"\x69\x82"
    assert se.path.read_bytes() == before


def test_external_authenticate_inside_an_scp11_session_is_refused(se):
    _open(se)
    assert se.transmit(bytes.fromhex("8482330010" + "00" * 16))[-2:] == b"\x69\x85"


def test_yubikit_scp11b_host_opens_a_session_with_the_se(se):
    yubikit = pytest.importorskip("yubikit.securitydomain",
                                  reason="yubikit not installed: pip install --no-deps yubikey-manager==5.5.1")
    from test_gp_yubikit_interop import SeConnection
    from yubikit.core.smartcard.scp import KeyRef, Scp11KeyParams

    conn = SeConnection(se.transmit)
    sd = yubikit.SecurityDomainSession(conn)
    certs = sd.get_certificate_bundle(KeyRef(0x13, 0x01))
    assert [c.subject for c in certs] == [c.subject for c in _bundle(se)]
    sd.authenticate(Scp11KeyParams(KeyRef(0x13, 0x01), certs[-1].public_key()))
    assert sd.get_data(0x9F7F)[:2] == b"\x9f\x7f"  # CPLC, through C-MAC, C-DEC, R-MAC and R-ENC
    assert conn.sent[-1][0] & 0x04


# --- the SD certificate check ---------------------------------------------------------------

def _maker(tmp_path, name="m") -> SeMaker:
    return se_maker(tmp_path / name)


def test_verify_sd_certificate_refusals(tmp_path):
    maker, other = _maker(tmp_path, "a"), _maker(tmp_path, "b")
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = x509.load_der_x509_certificate(maker.certify(key.public_key(), bytes(10), bytes(4)))
    assert verify_sd_certificate([leaf], [maker.root], at=now()) == leaf
    with pytest.raises(Scp11CertificateError, match="does not verify against the trusted SE maker roots"):
        verify_sd_certificate([leaf], [other.root], at=now())
    with pytest.raises(Scp11CertificateError, match="does not verify"):
        verify_sd_certificate([leaf], [maker.root], at=now() + dt.timedelta(days=365 * 25))
    with pytest.raises(Scp11CertificateError, match="no trusted SE maker root"):
        verify_sd_certificate([leaf], [], at=now())
    with pytest.raises(Scp11CertificateError, match="no SD certificate"):
        verify_sd_certificate([], [maker.root], at=now())
    # a certificate for signing, not key agreement; and one for a P-384 key
    ca_key = serialization.load_pem_private_key((tmp_path / "a" / "se-maker" / "ca-key.pem").read_bytes(), None)
    for pub, usage in ((key.public_key(), False), (ec.generate_private_key(ec.SECP384R1()).public_key(), True)):
        bad = (x509.CertificateBuilder().subject_name(leaf.subject).issuer_name(maker.root.subject)
               .public_key(pub).serial_number(7).not_valid_before(now() - dt.timedelta(days=1))
               .not_valid_after(now() + dt.timedelta(days=9))
               .add_extension(x509.KeyUsage(not usage, False, False, False, usage, False, False, False, False), True)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False)
               .sign(ca_key, hashes.SHA256()))
        with pytest.raises(Scp11CertificateError, match="key agreement|P-256"):
            verify_sd_certificate([bad], [maker.root], at=now())


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=300))
def test_the_certificate_bundle_parser_takes_any_bytes(data):
    try:
        parse_certificate_bundle(data)
    except Scp11CertificateError:
        pass


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=200))
def test_internal_authenticate_takes_any_bytes(data):
    sk = ec.generate_private_key(ec.SECP256R1())
    card = Scp11bCard(0x01, SCP11B_KID, lambda peer: sk.exchange(ec.ECDH(), peer))
    try:
        card.internal_authenticate(CommandApdu(0x80, 0x88, 1, 0x13, data, 256))
    except Scp11ProtocolError as e:
        assert e.sw == 0x6A80
    with pytest.raises(Scp11ProtocolError):  # while a valid template with no key is still refused
        Scp11bCard(0x01, SCP11B_KID, lambda p: b"").internal_authenticate(
            CommandApdu(0x80, 0x88, 1, 0x13, control_reference_template(), 256))


def test_two_first_phones_at_once_make_one_maker(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    home = tmp_path / "fresh"
    with ThreadPoolExecutor(4) as pool:
        pids = list(pool.map(lambda _: wallet_sim.create_phone(home), range(4)))
    roots = x509.load_pem_x509_certificates(root_path(home).read_bytes())
    assert len(roots) == 1
    assert not [p for p in home.iterdir() if p.name.startswith(".se-maker")]
    for pid in pids:
        se = wallet_sim.open_secure_element(pid, home)
        se.transmit(ISD_SELECT)
        verify_sd_certificate(_bundle(se), roots, at=now())
    assert oct((home / "se-maker" / "ca-key.pem").stat().st_mode & 0o777) == "0o600"





@pytest.mark.parametrize("damage", ["version 4", "ExtendedKeyUsage twice"])
def test_a_bundle_certificate_cryptography_refuses_late_is_a_certificate_error(damage):
    """A hostile SE's certificate store answer (GET DATA BF21) holding a version-4
    certificate: cryptography loads it and raises InvalidVersion (no ValueError), which
    escaped parse_certificate_bundle instead of Scp11CertificateError; a repeated extension
    loaded and went on to the path validation. Found by the deep fuzz campaign; the bundle
    is loaded with protocols.certs now, like every certificate from the wire."""
    from test_certs import IACA, _with_two_ekus, with_version_4

    bad = with_version_4(IACA) if damage == "version 4" else _with_two_ekus()
    with pytest.raises(Scp11CertificateError, match="not X.509 DER"):
        parse_certificate_bundle(bad)


# --- the card side's own refusals (mutation testing, second round) -------------------------


def test_the_card_opens_one_session_per_object_and_only_from_a_plain_command():
    """The SD side of one session answers INTERNAL AUTHENTICATE once (a second one to the
    same object is a state error: it would restart the MAC chain of an open session), and
    only in plain (Amendment F: the command that opens the channel carries no secure
    messaging; 6882 for the SM bit)."""
    sk = ec.generate_private_key(ec.SECP256R1())
    card = Scp11bCard(0x01, SCP11B_KID, lambda peer: sk.exchange(ec.ECDH(), peer))
    ia = CommandApdu.parse(Scp11bHost(sk.public_key(), 0x01).internal_authenticate())
    secured = CommandApdu(0x84, ia.ins, ia.p1, ia.p2, ia.data, 256)
    with pytest.raises(Scp11ProtocolError) as e:
        card.internal_authenticate(secured)
    assert e.value.sw == 0x6882 and not card.is_open
    card.internal_authenticate(ia)
    assert card.is_open
    with pytest.raises(Scp11StateError):
        card.internal_authenticate(ia)


def test_the_card_answers_with_the_ephemeral_key_it_was_given():
    """A card built with a given ephemeral key (known-answer tests) answers that key's point
    in 5F49, and the host derives the same session from it."""
    from protocols.gp.tlv import parse_all

    sk, esk = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    card = Scp11bCard(0x01, SCP11B_KID, lambda peer: sk.exchange(ec.ECDH(), peer), ephemeral=esk)
    host = Scp11bHost(sk.public_key(), 0x01)
    resp = card.internal_authenticate(CommandApdu.parse(host.internal_authenticate()))
    assert parse_all(resp[:-2])[0].value == esk.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    host.on_internal_authenticate_response(resp)
    assert host.key_dek == card.key_dek


def test_the_host_refuses_a_receipt_of_another_length_as_malformed():
    """The answer's receipt is a 16-byte CMAC (Amendment F): a receipt of another
    length is a malformed answer (Scp11ProtocolError), not a card failing to prove its key."""
    host = Scp11bHost(ec.generate_private_key(ec.SECP256R1()).public_key(), 0x01)
    host.internal_authenticate()
    with pytest.raises(Scp11ProtocolError, match="16-byte receipt"):
        host.on_internal_authenticate_response(_epk() + encode(0x86, bytes(15)) + b"\x90\x00")
    assert host.state is HostState.CLOSED


def test_an_sd_certificate_for_an_rsa_key_is_refused_as_not_p256(tmp_path):
    """PK.SD.ECKA is an EC key (Amendment F; P-256 here): a maker's certificate for an RSA
    key is a Scp11CertificateError naming the curve, not an AttributeError out of the check."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    maker = _maker(tmp_path)
    ca_key = serialization.load_pem_private_key((tmp_path / "m" / "se-maker" / "ca-key.pem").read_bytes(), None)
    rsa_leaf = (x509.CertificateBuilder().subject_name(maker.root.subject).issuer_name(maker.root.subject)
                .public_key(rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key())
                .serial_number(8).not_valid_before(now() - dt.timedelta(days=1))
                .not_valid_after(now() + dt.timedelta(days=9))
                .add_extension(x509.KeyUsage(False, False, False, False, True, False, False, False, False), True)
                .sign(ca_key, hashes.SHA256()))
    with pytest.raises(Scp11CertificateError, match="P-256"):
        verify_sd_certificate([rsa_leaf], [maker.root], at=now())


@pytest.mark.parametrize(("data", "match"), [
    (_crt(klen=b"\x11") + _epk(), "key length 11"),  # AES keys are 16, 24 or 32 bytes
    (_crt(klen=b"\x10\x10") + _epk(), "key length 1010"),  # the length is one byte
    (encode(0xA6, b"\x90\x05\x11") + _epk(), "control reference template: "),  # runs past A6
    (encode(0xA6, encode(0x90, b"\x11\x00") + encode(0x95, b"\x3c") + encode(0x80, b"\x88")) + _epk(),
     "exactly 90, 95, 80 and 81"),  # no key length
    (_crt() + encode(0x5F49, b"\x04" + bytes(63)), "64 bytes, not an uncompressed"),
    (_crt() + encode(0x5F49, b"\x02" + bytes(32)), "33 bytes, not an uncompressed"),
], ids=["17-byte-keys", "2-byte-length", "broken-template", "missing-tag", "short-point", "compressed-point"])
def test_internal_authenticate_data_refusals_name_what_is_wrong(data, match):
    """Amendment F 7.6: the template holds 90, 95, 80 and 81 once each, 81 one byte
    naming AES-128/192/256, and 5F49 an uncompressed P-256 point (04 || X || Y, 65 bytes).
    Each defect is a Scp11ProtocolError with SW 6A80 saying which it is, before any key
    agreement (a missing tag must not escape as a KeyError)."""
    with pytest.raises(Scp11ProtocolError, match=match) as e:
        parse_internal_authenticate(data)
    assert e.value.sw == 0x6A80


def test_mutual_authenticate_data_refusals_name_that_command():
    with pytest.raises(Scp11ProtocolError, match="MUTUAL AUTHENTICATE data"):
        parse_internal_authenticate(b"\x01", SCP11A_PARAM)
    with pytest.raises(Scp11ProtocolError, match="INTERNAL AUTHENTICATE data"):
        parse_internal_authenticate(b"\x01")
