"""SCP11a (GPCS Amendment F): the OCE's chain as the card verifies it, the pure protocol both
ways, the SE's PERFORM SECURITY OPERATION and MUTUAL AUTHENTICATE, what an SE with a CA-KLOC
key lets SCP11b do, and yubikit's SCP11a host against the SE."""

from __future__ import annotations

import datetime as dt
import os

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import wallet_sim
from protocols.gp.apdu import CommandApdu
from protocols.gp.errors import Scp11AuthenticationError, Scp11ProtocolError, Scp11StateError
from protocols.gp.keys import parse_key_information_template, put_key_command
from protocols.gp.scp03 import HostState
from protocols.gp.scp11 import (
    KLOC_KID,
    SCP11A_KID,
    OceChainCollector,
    Scp11aCard,
    Scp11aHost,
    certificate_store_query,
    control_reference_template,
    parse_certificate_bundle,
    verify_oce_chain,
    verify_sd_certificate,
)
from protocols.gp.tlv import encode
from tsm.oce import kloc_certificate, lab_oce
from wallet_sim.se.maker import root_path

ISD_SELECT = bytes.fromhex("00A4040008A000000151000000")
P256 = ec.SECP256R1()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: str, signer, *, ca: bool = False,  # noqa: ANN001
          agreement: bool = True, key_usage: bool = True, cert_sign: bool = True, path_length: int | None = None,
          extra: tuple[x509.ExtensionType, bool] | None = None) -> bytes:
    b = (x509.CertificateBuilder()
         .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
         .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(_now() - dt.timedelta(days=1)).not_valid_after(_now() + dt.timedelta(days=30))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True))
    if key_usage:
        b = b.add_extension(x509.KeyUsage(digital_signature=ca and not cert_sign, content_commitment=False,
                                          key_encipherment=False, data_encipherment=False,
                                          key_agreement=agreement and not ca, key_cert_sign=ca and cert_sign,
                                          crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
    if extra is not None:
        b = b.add_extension(extra[0], critical=extra[1])
    return b.sign(signer, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


class Oce:
    """A KLOC CA and an OCE it certifies, directly or through an intermediate CA."""

    def __init__(self, *, intermediate: bool = False) -> None:
        self.ca = ec.generate_private_key(P256)
        self.key = ec.generate_private_key(P256)
        if intermediate:
            mid = ec.generate_private_key(P256)
            self.chain = [_cert("mid", mid, "kloc", self.ca, ca=True), _cert("oce", self.key, "mid", mid)]
        else:
            self.chain = [_cert("oce", self.key, "kloc", self.ca)]

    def exchange(self, peer: ec.EllipticCurvePublicKey) -> bytes:
        return self.key.exchange(ec.ECDH(), peer)


def _pso(der: bytes, more: bool = False, kvn: int = 1, kid: int = KLOC_KID, cla: int = 0x80) -> CommandApdu:
    return CommandApdu(cla, 0x2A, kvn, kid | (0x80 if more else 0), der)


def _pair(oce: Oce, key_length: int = 16, *, host_key=None):  # noqa: ANN001, ANN202
    sd = ec.generate_private_key(P256)
    host = Scp11aHost(sd.public_key(), 0x01, oce_certificates=oce.chain, key_length=key_length,
                      oce_exchange=(lambda p: host_key.exchange(ec.ECDH(), p)) if host_key else oce.exchange)
    collector = OceChainCollector(oce.ca.public_key())
    for apdu in host.certificate_commands():
        collector.take(CommandApdu.parse(apdu))
        host.on_certificate_response(b"\x90\x00")
    assert collector.oce_key is not None
    card = Scp11aCard(0x01, SCP11A_KID, lambda peer: sd.exchange(ec.ECDH(), peer), collector.oce_key)
    return host, card, card.mutual_authenticate(CommandApdu.parse(host.mutual_authenticate()))


# --- the pure protocol --------------------------------------------------------------------

@settings(max_examples=15, deadline=None)
@given(key_length=st.sampled_from([16, 24, 32]), intermediate=st.booleans(),
       data=st.sampled_from([b"", b"\x01", bytes(15), bytes(16), bytes(17), bytes(255)]))
def test_host_and_card_agree(key_length, intermediate, data):
    host, card, answer = _pair(Oce(intermediate=intermediate), key_length)
    host.on_mutual_authenticate_response(answer)
    assert host.state is HostState.OPEN and card.is_open and card.oce_authenticated
    assert host.key_dek == card.key_dek and len(host.key_dek) == key_length
    assert host.mac_chaining_value == card.mac_chaining_value == host.receipt
    plain = CommandApdu(0x80, 0xE2, 0x80, 0x00, data, 256)
    got = card.unwrap(CommandApdu.parse(host.wrap(plain.to_bytes())))
    assert got.data == data
    assert host.unwrap(card.wrap_response(b"ok", 0x9000)) == b"ok\x90\x00"


def test_the_mutual_authenticate_command_is_yubikit_shaped():
    oce = Oce()
    host = Scp11aHost(ec.generate_private_key(P256).public_key(), 0x03, oce_certificates=oce.chain,
                      oce_exchange=oce.exchange, kloc_kvn=0x02)
    (pso,) = [CommandApdu.parse(a) for a in host.certificate_commands()]
    assert (pso.cla, pso.ins, pso.p1, pso.p2, pso.data) == (0x80, 0x2A, 0x02, 0x10, oce.chain[0])
    with pytest.raises(Scp11StateError, match="outstanding"):
        host.mutual_authenticate()  # the certificate's answer has not come
    host.on_certificate_response(b"\x90\x00")
    ma = CommandApdu.parse(host.mutual_authenticate())
    assert (ma.cla, ma.ins, ma.p1, ma.p2) == (0x80, 0x82, 0x03, SCP11A_KID)
    assert ma.data.startswith(control_reference_template(16, 0x01))  # 90 11 01


def test_a_host_without_the_certified_oce_key_fails_the_receipt():
    # the card computes ShSes with the key the chain certifies; a host that holds another
    # key gets other session keys, and the receipt tells it
    host, _, answer = _pair(Oce(), host_key=ec.generate_private_key(P256))
    with pytest.raises(Scp11AuthenticationError, match="did not take the OCE's certified key"):
        host.on_mutual_authenticate_response(answer)
    assert host.state is HostState.CLOSED


def test_a_refused_certificate_fails_the_host():
    oce = Oce()
    host = Scp11aHost(ec.generate_private_key(P256).public_key(), 1, oce_certificates=oce.chain,
                      oce_exchange=oce.exchange)
    host.certificate_commands()
    with pytest.raises(Scp11ProtocolError, match="OCE certificate 1 of 1.*6982"):
        host.on_certificate_response(b"\x69\x82")
    assert host.state is HostState.CLOSED
    with pytest.raises(Scp11StateError):
        host.mutual_authenticate()


def test_a_pipelined_mutual_authenticate_waits_for_the_certificate_answers():
    oce = Oce()
    sd = ec.generate_private_key(P256)
    host = Scp11aHost(sd.public_key(), 1, oce_certificates=oce.chain, oce_exchange=oce.exchange)
    host.certificate_commands()
    host.mutual_authenticate_pipelined()
    with pytest.raises(Scp11StateError, match="before every OCE certificate"):
        host.on_mutual_authenticate_response(b"\x90\x00")


@pytest.mark.parametrize("case", ["other-ca", "mid-not-ca", "no-agreement", "no-key-usage", "not-der", "p384",
                                  "truncated"])
def test_the_card_refuses_a_chain_that_does_not_verify(case):
    oce = Oce()
    chain, sw = list(oce.chain), 0x6982
    if case == "other-ca":
        chain = Oce().chain
    elif case == "mid-not-ca":
        mid = ec.generate_private_key(P256)
        chain = [_cert("mid", mid, "kloc", oce.ca, ca=False), _cert("oce", oce.key, "mid", mid)]
    elif case == "no-agreement":
        chain = [_cert("oce", oce.key, "kloc", oce.ca, agreement=False)]
    elif case == "no-key-usage":
        chain = [_cert("oce", oce.key, "kloc", oce.ca, key_usage=False)]
    elif case == "not-der":
        chain, sw = [b"\x30\x03\x02\x01\x01"], 0x6A80
    elif case == "p384":
        chain = [_cert("oce", ec.generate_private_key(ec.SECP384R1()), "kloc", oce.ca)]
    elif case == "truncated":
        chain, sw = [oce.chain[0][:-1]], 0x6A80
    with pytest.raises(Scp11ProtocolError) as e:
        verify_oce_chain(chain, oce.ca.public_key())
    assert e.value.sw == sw


#: an extension no part of the card processes
_PRIVATE = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.7"), b"\x05\x00")


@pytest.mark.parametrize(("case", "match"), [
    ("critical-private-leaf", r"OCE certificate 1 \(CN=oce\): .*critical extension 1\.3\.6\.1\.4\.1\.99999\.7"),
    ("critical-private-mid", r"OCE certificate 1 \(CN=mid\): .*critical extension 1\.3\.6\.1\.4\.1\.99999\.7"),
    ("critical-policies", r"critical extension 2\.5\.29\.32 \(certificatePolicies\)"),
    ("mid-no-cert-sign", r"OCE certificate 1 signs certificate 2 but .*keyCertSign"),
    ("mid-path-length-0", r"OCE certificate 1 signs certificate 2 but its path length constraint 0 allows 0 .* has 1"),
])
def test_the_card_holds_the_oce_chain_to_rfc_5280(case, match):
    """RFC 5280 4.2: a certificate marking critical an extension the verifier does not
    process is rejected (the card processes basic constraints and key usage, and reads the
    key identifiers); 6.1.4 (l)-(n): a CA certificate's path length constraint and its key
    usage's keyCertSign bind the certificates under it. The card took all of these."""
    oce = Oce()
    mid, mid2 = ec.generate_private_key(P256), ec.generate_private_key(P256)
    policies = x509.CertificatePolicies([x509.PolicyInformation(x509.ObjectIdentifier("1.2.3.4"), None)])
    chain = {
        "critical-private-leaf": lambda: [_cert("oce", oce.key, "kloc", oce.ca, extra=(_PRIVATE, True))],
        "critical-private-mid": lambda: [_cert("mid", mid, "kloc", oce.ca, ca=True, extra=(_PRIVATE, True)),
                                         _cert("oce", oce.key, "mid", mid)],
        "critical-policies": lambda: [_cert("oce", oce.key, "kloc", oce.ca, extra=(policies, True))],
        "mid-no-cert-sign": lambda: [_cert("mid", mid, "kloc", oce.ca, ca=True, cert_sign=False),
                                     _cert("oce", oce.key, "mid", mid)],
        "mid-path-length-0": lambda: [_cert("mid", mid, "kloc", oce.ca, ca=True, path_length=0),
                                      _cert("mid2", mid2, "mid", mid, ca=True),
                                      _cert("oce", oce.key, "mid2", mid2)],
    }[case]()
    with pytest.raises(Scp11ProtocolError, match=match) as e:
        verify_oce_chain(chain, oce.ca.public_key())
    assert e.value.sw == 0x6982


def test_the_card_takes_what_it_does_not_process_when_not_critical_and_a_path_length_that_allows_the_chain():
    """The other side of the rules above: the same extension not critical is ignored, and
    a path length constraint of 1 allows one CA under it."""
    oce = Oce()
    mid, mid2 = ec.generate_private_key(P256), ec.generate_private_key(P256)
    assert verify_oce_chain([_cert("oce", oce.key, "kloc", oce.ca, extra=(_PRIVATE, False))],
                            oce.ca.public_key()) == oce.key.public_key()
    chain = [_cert("mid", mid, "kloc", oce.ca, ca=True, path_length=1), _cert("mid2", mid2, "mid", mid, ca=True,
                                                                                 path_length=0),
             _cert("oce", oce.key, "mid2", mid2)]
    assert verify_oce_chain(chain, oce.ca.public_key()) == oce.key.public_key()


def test_the_collector_bounds_the_chain_and_starts_over():
    oce = Oce()
    c = OceChainCollector(oce.ca.public_key())
    for _ in range(4):
        assert c.take(_pso(oce.chain[0], more=True)) is False
    with pytest.raises(Scp11ProtocolError) as e:
        c.take(_pso(oce.chain[0], more=True))
    assert e.value.sw == 0x6A84
    assert c.take(_pso(oce.chain[0])) is True and c.oce_key is not None  # forgotten: a new chain
    with pytest.raises(Scp11ProtocolError) as e:
        c.take(_pso(bytes(2049)))
    assert e.value.sw == 0x6A80 and c.oce_key is None


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=600), st.booleans())
def test_the_collector_takes_any_bytes(data, more):
    c = OceChainCollector(ec.generate_private_key(P256).public_key())
    try:
        c.take(_pso(data, more=more))
    except Scp11ProtocolError as e:
        assert e.sw in (0x6A80, 0x6982)



def _signed(subject_key, signer, *, ca: bool = False, pad: int = 0) -> bytes:  # noqa: ANN001
    """A certificate for ``subject_key`` (a public key of any type) signed by ``signer`` (any
    private key; Ed25519 signs without a hash), padded by an extension of ``pad`` bytes."""
    now = _now()
    b = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
         .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kloc")])).public_key(subject_key)
         .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
         .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                      data_encipherment=False, key_agreement=not ca, key_cert_sign=ca,
                                      crl_sign=False, encipher_only=False, decipher_only=False), critical=True))
    if pad:
        b = b.add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"),
                                                       bytes(pad)), critical=False)
    alg = None if isinstance(signer, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return b.sign(signer, alg).public_bytes(serialization.Encoding.DER)


@pytest.mark.parametrize(("case", "sw", "match"), [
    ("empty", 0x6A80, "no OCE certificate"),
    ("second-not-der", 0x6A80, "OCE certificate 2: not X.509 DER"),
    ("rsa-intermediate", 0x6982, "certificate 2 .* is not signed by certificate 1"),
    ("ed25519-signature", 0x6982, "certificate 1 .* is not signed by the CA-KLOC key"),
    ("rsa-leaf", 0x6982, "does not certify a P-256 key"),
])
def test_verify_oce_chain_refuses_chains_a_card_cannot_take(case, sw, match):
    """Amendment F: the OCE's chain is ECDSA all the way from the CA-KLOC key to a P-256
    key agreement key. An empty chain, a certificate that is not DER, a signer that is not
    an EC key (an RSA CA), a signature without a hash (Ed25519) and a leaf certifying an
    RSA key are each refused with their status word, never taken and never an exception
    of another kind (a TypeError or AttributeError would escape the card's handler)."""
    oce = Oce()
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    chain: list[bytes] = {
        "empty": [],
        "second-not-der": [_cert("mid", oce.key, "kloc", oce.ca, ca=True), b"\x30\x03\x02\x01\x01"],
        "rsa-intermediate": [_signed(rsa_key.public_key(), oce.ca, ca=True), _signed(oce.key.public_key(), rsa_key)],
        "ed25519-signature": [_signed(oce.key.public_key(), ed25519.Ed25519PrivateKey.generate())],
        "rsa-leaf": [_signed(rsa_key.public_key(), oce.ca)],
    }[case]
    with pytest.raises(Scp11ProtocolError, match=match) as e:
        verify_oce_chain(chain, oce.ca.public_key())
    assert e.value.sw == sw


def test_the_collector_takes_certificates_of_up_to_2048_bytes_in_plain_and_forgets_on_refusal():
    """A card keeps at most MAX_CERTIFICATE_BYTES (2048) per certificate: one of exactly
    2048 bytes is taken, one of 2049 or none at all refused (6A80); PERFORM SECURITY
    OPERATION with secure messaging is 6882. Each refusal forgets the certificates taken
    so far, so the leaf sent next stands alone under the CA-KLOC key."""
    oce = Oce(intermediate=True)
    mid, leaf = oce.chain
    pad = 2048 - 30 - len(_signed(oce.key.public_key(), oce.ca))
    big = _signed(oce.key.public_key(), oce.ca, pad=pad)
    while len(big) != 2048:  # an ECDSA signature is 70 to 72 bytes: adjust until it fits
        pad += 2048 - len(big)
        big = _signed(oce.key.public_key(), oce.ca, pad=pad)
    c = OceChainCollector(oce.ca.public_key())
    assert c.take(_pso(big)) is True and c.oce_key is not None
    for bad, sw, match in ((_pso(bytes(2049)), 0x6A80, "certificate of 2049 bytes"),
                           (_pso(b""), 0x6A80, "certificate of 0 bytes"),
                           (_pso(mid, cla=0x84), 0x6882, "in plain")):
        assert c.take(_pso(mid, more=True)) is False
        with pytest.raises(Scp11ProtocolError, match=match) as e:
            c.take(bad)
        assert e.value.sw == sw and c.oce_key is None
        with pytest.raises(Scp11ProtocolError) as e:
            c.take(_pso(leaf))  # alone: not signed by the CA-KLOC key
        assert e.value.sw == 0x6982


# --- the SE -------------------------------------------------------------------------------

@pytest.fixture
def home(tmp_path):
    return tmp_path / "home"


@pytest.fixture
def se(home):
    pid = wallet_sim.create_phone(home, kloc=kloc_certificate(home).public_key())
    se = wallet_sim.open_secure_element(pid, home)
    assert se.transmit(ISD_SELECT)[-2:] == b"\x90\x00"
    return se


def _sd_key(se, home, kid: int = SCP11A_KID) -> ec.EllipticCurvePublicKey:  # noqa: ANN001
    r = se.transmit(CommandApdu(0x80, 0xCA, 0xBF, 0x21, certificate_store_query(kid, 0x01), 65536).to_bytes())
    assert r[-2:] == b"\x90\x00"
    leaf = verify_sd_certificate(parse_certificate_bundle(r[:-2]),
                                 x509.load_pem_x509_certificates(root_path(home).read_bytes()), at=_now())
    assert "SCP11a" in leaf.subject.rfc4514_string() if kid == SCP11A_KID else "SCP11b"
    return leaf.public_key()


def _open(se, home, oce=None) -> Scp11aHost:  # noqa: ANN001
    cred = oce or lab_oce(home)
    host = Scp11aHost(_sd_key(se, home), 0x01, oce_certificates=cred.certificates, oce_exchange=cred.exchange)
    for apdu in host.certificate_commands():
        host.on_certificate_response(se.transmit(apdu))
    host.on_mutual_authenticate_response(se.transmit(host.mutual_authenticate()))
    return host


def test_the_tsm_opens_scp11a_and_loads_keys(se, home):
    host = _open(se, home)
    new = bytes(range(16))
    r = host.unwrap(se.transmit(host.wrap(put_key_command(0x30, 0x31, [new] * 3, host.key_dek).to_bytes())))
    assert r[-2:] == b"\x90\x00"
    keys = parse_key_information_template(host.unwrap(se.transmit(host.wrap(bytes.fromhex("80CA00E000"))))[:-2])
    assert {k.kvn for k in keys} == {0x31}
    # a second SCP11a session on the same card, after the factory keys are gone, still may
    se.transmit(ISD_SELECT)
    host = _open(se, home)
    assert host.unwrap(se.transmit(host.wrap(bytes.fromhex("80F0800700"))))[-2:] != b"\x69\x82"


def test_scp11b_loads_no_key_on_an_se_with_a_kloc_key(se, home):
    from protocols.gp.scp11 import Scp11bHost

    host = Scp11bHost(_sd_key(se, home, 0x13), 0x01)
    host.on_internal_authenticate_response(se.transmit(host.internal_authenticate()))
    before = se.path.read_bytes()
    # the factory keys are still there, and still SCP11b changes nothing: only the OCEs
    # the SE's issuer named may load keys
    for cmd in (put_key_command(0x30, 0x31, [bytes(16)] * 3, host.key_dek).to_bytes(),
                bytes.fromhex("80E40000084F06A00000015100"), bytes.fromhex("80F0800700")):
        assert host.unwrap(se.transmit(host.wrap(cmd)))[-2:] == b"\x69\x82"
    assert host.unwrap(se.transmit(host.wrap(bytes.fromhex("80CA9F7F00"))))[-2:] == b"\x90\x00"
    assert se.path.read_bytes() == before


def _ma(data: bytes | None = None, p1: int = 1) -> bytes:
    if data is None:
        data = control_reference_template(16, 0x01) + encode(0x5F49, ec.generate_private_key(P256).public_key()
                                                              .public_bytes(serialization.Encoding.X962,
                                                                            serialization.PublicFormat.UncompressedPoint))
    return CommandApdu(0x80, 0x82, p1, SCP11A_KID, data, 256).to_bytes()


@pytest.mark.parametrize("case", ["no-chain", "other-ca", "wrong-kid", "wrong-kvn", "bad-cert", "after-failed-chain",
                                  "unknown-sd-kvn", "scp11b-template", "secured-pso"])
def test_the_se_refuses(se, home, case):
    oce = lab_oce(home)
    before = se.path.read_bytes()
    cert = oce.certificates[0]
    expect = {}
    if case == "no-chain":
        expect[_ma()] = "6985"
    elif case == "other-ca":
        expect[_pso(Oce().chain[0]).to_bytes()] = "6982"
        expect[_ma()] = "6985"
    elif case == "wrong-kid":
        expect[_pso(cert, kid=0x11).to_bytes()] = "6A88"
    elif case == "wrong-kvn":
        expect[_pso(cert, kvn=2).to_bytes()] = "6A88"
    elif case == "bad-cert":
        expect[_pso(cert[:-3]).to_bytes()] = "6A80"
    elif case == "after-failed-chain":
        expect[_pso(cert).to_bytes()] = "9000"
        expect[_pso(b"\x01\x02").to_bytes()] = "6A80"
        expect[_ma()] = "6985"  # the failed chain forgot the good one
    elif case == "unknown-sd-kvn":
        expect[_pso(cert).to_bytes()] = "9000"
        expect[_ma(p1=2)] = "6A88"
    elif case == "scp11b-template":
        expect[_pso(cert).to_bytes()] = "9000"
        expect[_ma(control_reference_template() + encode(0x5F49, b"\x04" + bytes(64)))] = "6A80"
    elif case == "secured-pso":
        expect[_pso(cert, cla=0x84).to_bytes()] = "6982"
    for apdu, sw in expect.items():
        assert se.transmit(apdu)[-2:].hex().upper() == sw, apdu.hex()
    assert se.path.read_bytes() == before
    assert se.transmit(bytes.fromhex("84F28002024F00"))[-2:] == b"\x69\x82"  # and no session came of it


def test_an_se_without_a_kloc_key_offers_no_scp11a(home):
    pid = wallet_sim.create_phone(home)
    se = wallet_sim.open_secure_element(pid, home)
    se.transmit(ISD_SELECT)
    assert se.transmit(_pso(lab_oce(home).certificates[0]).to_bytes())[-2:] == b"\x6a\x88"
    assert se.transmit(_ma())[-2:] == b"\x6a\x88"
    r = se.transmit(CommandApdu(0x80, 0xCA, 0xBF, 0x21, certificate_store_query(SCP11A_KID, 1), 65536).to_bytes())
    assert r[-2:] == b"\x6a\x88"
    keys = wallet_sim.describe(pid, home)["secure_element"]["security_domains"][0]["scp11_keys"]
    assert [k["scp"] for k in keys] == ["11b"]


def test_phone_show_names_the_scp11_keys(se, home):
    keys = wallet_sim.describe(se.path.parent.name, home)["secure_element"]["security_domains"][0]["scp11_keys"]
    assert [(k["kid"], k["scp"]) for k in keys] == [("11", "11a"), ("13", "11b"), ("10", "CA-KLOC")]


def test_yubikit_scp11a_host_opens_a_session_with_the_se(se, home):
    yubikit = pytest.importorskip("yubikit.securitydomain",
                                  reason="yubikit not installed: pip install --no-deps yubikey-manager==5.5.1")
    from test_gp_yubikit_interop import SeConnection
    from yubikit.core.smartcard.scp import KeyRef, Scp11KeyParams

    conn = SeConnection(se.transmit)
    sd = yubikit.SecurityDomainSession(conn)
    certs = sd.get_certificate_bundle(KeyRef(SCP11A_KID, 0x01))
    oce = lab_oce(home)
    key = serialization.load_pem_private_key((home / "tsm-oce" / "oce-key.pem").read_bytes(), None)
    sd.authenticate(Scp11KeyParams(KeyRef(SCP11A_KID, 0x01), certs[-1].public_key(), KeyRef(KLOC_KID, 0x01), key,
                                   [x509.load_der_x509_certificate(c) for c in oce.certificates]))
    assert sd.get_data(0x9F7F)[:2] == b"\x9f\x7f"
    assert any(a[1] == 0x2A for a in conn.sent) and any(a[1] == 0x82 and a[3] == 0x11 for a in conn.sent)


@pytest.fixture(scope="module")
def fuzz_se(tmp_path_factory):
    home = tmp_path_factory.mktemp("scp11a-fuzz")
    pid = wallet_sim.create_phone(home, kloc=kloc_certificate(home).public_key())
    se = wallet_sim.open_secure_element(pid, home)
    se.transmit(ISD_SELECT)
    return se, lab_oce(home).certificates[0]


_opening = st.one_of(
    st.tuples(st.just(0x2A), st.sampled_from([1, 0, 2]) | st.integers(0, 255),
              st.sampled_from([0x10, 0x90, 0x11]) | st.integers(0, 255),
              st.sampled_from(["cert", "cut", "junk"]), st.binary(max_size=40)),
    st.tuples(st.just(0x82), st.sampled_from([1, 0]) | st.integers(0, 255), st.sampled_from([0x11, 0x13]),
              st.sampled_from(["template", "junk"]), st.binary(max_size=80)),
    st.tuples(st.just(0x88), st.just(1), st.just(0x13), st.just("template"), st.binary(max_size=8)))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(_opening, min_size=1, max_size=5))
def test_scp11a_openings_in_any_order_answer_a_status_and_persist_nothing(fuzz_se, commands):
    se, cert = fuzz_se
    before = se.path.read_bytes()
    for ins, p1, p2, kind, noise in commands:
        if kind == "cert":
            data = cert
        elif kind == "cut":
            data = cert[: max(1, len(noise))]
        elif kind == "template":
            variant = 0x01 if ins == 0x82 else 0x00
            data = control_reference_template(16, variant) + encode(0x5F49, ec.generate_private_key(P256).public_key()
                                                                     .public_bytes(serialization.Encoding.X962,
                                                                                   serialization.PublicFormat
                                                                                   .UncompressedPoint))
        else:
            data = noise or b"\x00"
        r = se.transmit(CommandApdu(0x80, ins, p1, p2, data, 256 if ins != 0x2A else None).to_bytes())
        assert len(r) >= 2
        sw = r[-2:].hex().upper()
        assert sw in ("9000", "6A80", "6A84", "6A88", "6982", "6985"), (ins, p1, p2, kind, sw)
    assert se.path.read_bytes() == before


# --- the CA-KLOC key rotated (PUT KEY of an EC public key) ---------------------------------

def _point(key) -> bytes:  # noqa: ANN001
    return key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def test_the_issuer_rotates_the_ca_kloc_key_and_only_the_new_cas_oces_open_scp11a(se, home):
    from protocols.gp.keys import put_ec_public_key_command

    host = _open(se, home)
    new_ca = Oce()  # the operator's next KLOC CA, and an OCE it certifies
    r = host.unwrap(se.transmit(host.wrap(put_ec_public_key_command(0x01, 0x02, KLOC_KID,
                                                                      _point(new_ca.ca)).to_bytes())))
    assert r == b"\x02\x90\x00"  # the new KVN, no check value
    keys = wallet_sim.describe(se.path.parent.name, home)["secure_element"]["security_domains"][0]["scp11_keys"]
    assert [k["kvn"] for k in keys if k["scp"] == "CA-KLOC"] == ["02"]
    se.transmit(ISD_SELECT)
    # the old CA's OCE: its key reference is gone, and under the new one its chain fails
    old = lab_oce(home)
    assert se.transmit(_pso(old.certificates[0], kvn=1).to_bytes())[-2:] == b"\x6a\x88"
    assert se.transmit(_pso(old.certificates[0], kvn=2).to_bytes())[-2:] == b"\x69\x82"
    # the new CA's OCE opens SCP11a
    fresh = Scp11aHost(_sd_key(se, home), 0x01, oce_certificates=new_ca.chain, oce_exchange=new_ca.exchange,
                       kloc_kvn=0x02)
    for apdu in fresh.certificate_commands():
        fresh.on_certificate_response(se.transmit(apdu))
    fresh.on_mutual_authenticate_response(se.transmit(fresh.mutual_authenticate()))
    assert fresh.state is HostState.OPEN


@pytest.mark.parametrize("case", ["wrong-kvn", "p384", "not-on-curve", "check-value", "under-scp11b"])
def test_a_ca_kloc_key_is_refused(se, home, case):
    from protocols.gp.keys import put_ec_public_key_command

    point = _point(Oce().ca)
    cmd = put_ec_public_key_command(0x01, 0x02, KLOC_KID, point)
    sw = "6A80"
    if case == "wrong-kvn":
        cmd, sw = put_ec_public_key_command(0x03, 0x02, KLOC_KID, point), "6A88"
    elif case == "p384":
        cmd = CommandApdu(0x80, 0xD8, 1, KLOC_KID, b"\x02" + encode(0xB0, _point(ec.generate_private_key(
            ec.SECP384R1()))) + encode(0xF0, b"\x01") + b"\x00", 256)
    elif case == "not-on-curve":
        cmd = put_ec_public_key_command(0x01, 0x02, KLOC_KID, b"\x04" + bytes(64))
    elif case == "check-value":
        cmd = CommandApdu(0x80, 0xD8, 1, KLOC_KID, cmd.data[:-1] + b"\x03\x00\x00\x00", 256)
    if case == "under-scp11b":
        from protocols.gp.scp11 import Scp11bHost

        host = Scp11bHost(_sd_key(se, home, 0x13), 0x01)
        host.on_internal_authenticate_response(se.transmit(host.internal_authenticate()))
        sw = "6982"
    else:
        host = _open(se, home)
    before = se.path.read_bytes()
    assert host.unwrap(se.transmit(host.wrap(cmd.to_bytes())))[-2:].hex().upper() == sw
    assert se.path.read_bytes() == before


def test_yubikit_rotates_the_ca_kloc_key(se, home):
    yubikit = pytest.importorskip("yubikit.securitydomain",
                                  reason="yubikit not installed: pip install --no-deps yubikey-manager==5.5.1")
    from test_gp_yubikit_interop import SeConnection
    from yubikit.core.smartcard.scp import KeyRef, Scp11KeyParams

    sd = yubikit.SecurityDomainSession(SeConnection(se.transmit))
    certs = sd.get_certificate_bundle(KeyRef(SCP11A_KID, 0x01))
    oce = lab_oce(home)
    key = serialization.load_pem_private_key((home / "tsm-oce" / "oce-key.pem").read_bytes(), None)
    sd.authenticate(Scp11KeyParams(KeyRef(SCP11A_KID, 0x01), certs[-1].public_key(), KeyRef(KLOC_KID, 0x01), key,
                                   [x509.load_der_x509_certificate(c) for c in oce.certificates]))
    new_ca = ec.generate_private_key(P256)
    sd.put_key(KeyRef(KLOC_KID, 0x02), new_ca.public_key(), replace_kvn=0x01)  # checks the answer: the KVN
    keys = wallet_sim.describe(se.path.parent.name, home)["secure_element"]["security_domains"][0]["scp11_keys"]
    assert [k["kvn"] for k in keys if k["scp"] == "CA-KLOC"] == ["02"]


@settings(max_examples=80, deadline=None)
@given(st.binary(max_size=120))
def test_the_ec_public_key_put_key_parser_takes_any_bytes(data):
    from protocols.gp.errors import KeyError_
    from protocols.gp.keys import parse_put_ec_public_key_data

    try:
        kvn, point = parse_put_ec_public_key_data(data)
    except KeyError_:
        return
    assert 1 <= kvn <= 0x7F and len(point) == 65


# --- the allowlist of OCE certificates -----------------------------------------------------

def test_an_allowlist_retires_one_tsm_certificate_and_keeps_the_ca(se, home):
    from protocols.gp.scp11 import allowlist_data

    ours = lab_oce(home)
    serial = x509.load_der_x509_certificate(ours.certificates[0]).serial_number
    host = _open(se, home)
    retired = serial + 1  # another certificate of the same CA, say a retired TSM's
    r = host.unwrap(se.transmit(host.wrap(CommandApdu(0x80, 0xE2, 0x90, 0x00,
                                                       allowlist_data(KLOC_KID, 1, [serial, retired])).to_bytes())))
    assert r == b"\x90\x00"
    keys = wallet_sim.describe(se.path.parent.name, home)["secure_element"]["security_domains"][0]["scp11_keys"]
    assert [k["allowlist"] for k in keys if k["scp"] == "CA-KLOC"] == [sorted([f"{serial:X}", f"{retired:X}"])]
    se.transmit(ISD_SELECT)
    _open(se, home)  # on the list: opens
    # the list without it: the same CA's certificate is refused from the next chain on
    se.transmit(ISD_SELECT)
    host = _open(se, home)
    assert host.unwrap(se.transmit(host.wrap(CommandApdu(0x80, 0xE2, 0x90, 0x00,
                                                         allowlist_data(KLOC_KID, 1, [retired])).to_bytes())))[-2:] \
        == b"\x90\x00"
    se.transmit(ISD_SELECT)
    assert se.transmit(_pso(ours.certificates[0]).to_bytes())[-2:] == b"\x69\x82"
    # another OCE of the CA, on the list: opens
    other_key = ec.generate_private_key(P256)
    ca_key = serialization.load_pem_private_key((home / "tsm-oce" / "ca-key.pem").read_bytes(), None)
    ca = x509.load_pem_x509_certificate((home / "tsm-oce" / "ca.pem").read_bytes())
    other = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tsm 2")]))
             .issuer_name(ca.subject).public_key(other_key.public_key()).serial_number(retired)
             .not_valid_before(_now() - dt.timedelta(days=1)).not_valid_after(_now() + dt.timedelta(days=9))
             .add_extension(x509.KeyUsage(False, False, False, False, True, False, False, False, False), True)
             .sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER))
    host = Scp11aHost(_sd_key(se, home), 1, oce_certificates=[other],
                      oce_exchange=lambda p: other_key.exchange(ec.ECDH(), p))
    for apdu in host.certificate_commands():
        host.on_certificate_response(se.transmit(apdu))
    host.on_mutual_authenticate_response(se.transmit(host.mutual_authenticate()))
    # an empty list removes it: any certificate of the CA again
    assert host.unwrap(se.transmit(host.wrap(CommandApdu(0x80, 0xE2, 0x90, 0x00,
                                                         allowlist_data(KLOC_KID, 1, [])).to_bytes())))[-2:] \
        == b"\x90\x00"
    se.transmit(ISD_SELECT)
    _open(se, home)


@pytest.mark.parametrize(("data", "p1", "sw"), [
    (bytes.fromhex("A6048302100170039301FF"), 0x90, "6A80"),  # a negative serial
    (bytes.fromhex("A6048302110170039301 05".replace(" ", "")), 0x90, "6A88"),  # not the CA-KLOC key
    (bytes.fromhex("A604830210027003930105"), 0x90, "6A88"),  # another KVN
    (bytes.fromhex("A604830210017003930105"), 0x00, "6A86"),  # not the last block
    (bytes.fromhex("A6048302100170"), 0x90, "6A80"),  # truncated
])
def test_a_bad_allowlist_is_refused_and_changes_nothing(se, home, data, p1, sw):
    host = _open(se, home)
    before = se.path.read_bytes()
    assert host.unwrap(se.transmit(host.wrap(CommandApdu(0x80, 0xE2, p1, 0x00, data).to_bytes())))[-2:].hex().upper() \
        == sw
    assert se.path.read_bytes() == before


def test_yubikits_allowlist_is_the_one_the_se_takes(se, home):
    """yubikit's ``store_allowlist`` data, as its own helpers build it, parses as ours and
    the SE takes it. (yubikit sends STORE DATA with CLA 00, which GPCS 11.11 does not allow;
    the SE, strict, answers that 6D00, so the data goes here with CLA 80.)"""
    pytest.importorskip("yubikit.securitydomain",
                        reason="yubikit not installed: pip install --no-deps yubikey-manager==5.5.1")
    from yubikit.core import Tlv
    from yubikit.core.smartcard.scp import KeyRef
    from yubikit.securitydomain import _int2asn1

    from protocols.gp.scp11 import allowlist_data, parse_allowlist_data

    serials = [0x01, 0x80FF, 0x7F << 152]
    theirs = Tlv(0xA6, Tlv(0x83, KeyRef(KLOC_KID, 0x01))) + Tlv(0x70, b"".join(_int2asn1(n) for n in serials))
    assert theirs == allowlist_data(KLOC_KID, 0x01, serials)
    assert parse_allowlist_data(theirs) == (KLOC_KID, 0x01, tuple(serials))
    host = _open(se, home)
    assert host.unwrap(se.transmit(host.wrap(CommandApdu(0x80, 0xE2, 0x90, 0x00, theirs).to_bytes()))) \
        == b"\x90\x00"


@settings(max_examples=80, deadline=None)
@given(st.binary(max_size=80))
def test_the_allowlist_parser_takes_any_bytes(data):
    from protocols.gp.scp11 import parse_allowlist_data

    try:
        kid, kvn, serials = parse_allowlist_data(data)
    except Scp11ProtocolError as e:
        assert e.sw in (0x6A80, 0x6A84)
        return
    assert all(0 < s < 1 << 160 for s in serials)



def _allowlist(ref: str, *serials: str) -> bytes:
    body = b"".join(encode(0x93, bytes.fromhex(v)) for v in serials)
    return bytes.fromhex(f"A6{len(ref) // 2:02X}{ref}") + encode(0x70, body)


@pytest.mark.parametrize(("data", "sw", "match"), [
    (_allowlist(""), 0x6A80, "names no key"),  # no key reference
    (_allowlist("83021001" "83021001"), 0x6A80, "names no key"),  # two
    (_allowlist("84021001"), 0x6A80, "names no key"),  # another tag
    (_allowlist("830110"), 0x6A80, "names no key"),  # KID without KVN
    (_allowlist("83021001", *["01"] * 65), 0x6A84, "more than 64"),
    (_allowlist("83021001", "00"), 0x6A80, "positive"),  # zero
    (_allowlist("83021001", ""), 0x6A80, "1 to 20 bytes"),  # nothing
    (_allowlist("83021001", "0000" + "FF" * 20), 0x6A80, "1 to 20 bytes"),  # 22 bytes
    (_allowlist("83021001", "01" + "00" * 20), 0x6A80, "at most 20 bytes"),  # 2**160
    (bytes.fromhex("A6048302100170039401 05".replace(" ", "")), 0x6A80, "93 with a positive"),  # not 93
])
def test_the_allowlist_parser_refuses_each_malformed_part(data, sw, match):
    """STORE DATA's allowlist (specs/secure-element.md): A6 { 83 KID KVN } exactly, then at
    most 64 serial numbers, each 93 with a positive DER integer of at most 20 bytes (a
    leading 00 before a high bit: 21 bytes at most). Each defect is refused with its status
    word, never taken."""
    from protocols.gp.scp11 import parse_allowlist_data

    with pytest.raises(Scp11ProtocolError, match=match) as e:
        parse_allowlist_data(data)
    assert e.value.sw == sw


def test_the_allowlist_parser_takes_its_limits():
    """64 serial numbers; one of 20 bytes with its leading 00 (21 bytes, the largest below
    2**160); the smallest, 1."""
    from protocols.gp.scp11 import parse_allowlist_data

    top = (1 << 160) - 1
    assert parse_allowlist_data(_allowlist("83021001", "00" + "FF" * 20, "01"))[2] == (top, 1)
    assert parse_allowlist_data(_allowlist("83021001", *[f"{n:02X}" for n in range(1, 65)]))[2] \
        == tuple(range(1, 65))


@pytest.mark.parametrize("data", [
    "A61D" "4214" + "AB" * 20 + "800100" "83021002",  # another order
    "A61D" "800100" "4214" + "AB" * 20 + "84021002",  # another tag for the key
    "A61E" "80020000" "4214" + "AB" * 20 + "83021002",  # a kind of two bytes
    "A61C" "800100" "4214" + "AB" * 20 + "830110",  # KID without KVN
    "A61D" "800102" "4214" + "AB" * 20 + "83021002",  # kind 02: neither KLOC nor KLCC
    "A609" "800100" "4200" "83021002",  # no SKI
    "A62A" "800100" "4221" + "AB" * 33 + "83021002",  # an SKI of 33 bytes
])
def test_the_ca_issuer_parser_refuses_each_malformed_part(data):
    """STORE DATA naming the CA (yubikit's store_ca_issuer): A6 { 80 <kind 00/01> 42 <SKI, 1
    to 32 bytes> 83 <KID KVN> } in that order; anything else 6A80."""
    from protocols.gp.scp11 import parse_ca_issuer_data

    with pytest.raises(Scp11ProtocolError) as e:
        parse_ca_issuer_data(bytes.fromhex(data))
    assert e.value.sw == 0x6A80
    assert parse_ca_issuer_data(bytes.fromhex("A61D" "800100" "4214" + "AB" * 20 + "83021002")) \
        == (0x10, 0x02, b"\xab" * 20, 0)


@pytest.mark.parametrize(("data", "is_issuer"), [
    ("A60180", True), ("A6038001", True), ("A603800100", True),  # A6 whose first object is 80: a CA's name
    ("A60483021001", False), ("A6", False), ("A600", False), ("7003800100", False),
])
def test_store_data_to_the_sd_is_a_ca_name_when_a6_begins_with_80(data, is_issuer):
    from protocols.gp.scp11 import is_ca_issuer_data

    assert is_ca_issuer_data(bytes.fromhex(data)) is is_issuer


def test_a_verified_oce_chain_lasts_only_until_the_channels_next_session(se, home):
    """The OCE key a chain proved is for the MUTUAL AUTHENTICATE that follows it: an SCP03
    INITIALIZE UPDATE on the channel in between forgets it (found by mutation testing:
    the session end's dropping of the chain was held by no test)."""
    cert = lab_oce(home).certificates[0]
    assert se.transmit(_pso(cert).to_bytes())[-2:] == b"\x90\x00"
    assert se.transmit(bytes.fromhex("8050000008") + os.urandom(8) + b"\x00")[-2:] == b"\x90\x00"
    assert se.transmit(_ma())[-2:] == b"\x69\x85"
