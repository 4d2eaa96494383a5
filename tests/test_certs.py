"""protocols.certs: every malformed certificate is one CertificateParseError (a ValueError).

cryptography raises InvalidVersion (no ValueError) for a certificate whose version field is
out of range; before this loader, that escaped the JPKI CMS verifier and the CLI."""

import warnings

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import given, settings
from hypothesis import strategies as st
from test_jpki_cms import KEY_TYPES, sign_with
from test_mdoc_cli import _args, files  # noqa: F401 - the fixture
from test_mdoc_vectors import cert
from typer.testing import CliRunner

from mcred.cli.main import app
from protocols import certs
from protocols.jpki.cms import verify_detached_signature
from protocols.jpki.errors import JpkiError

IACA = cert("iaca_cert").public_bytes(Encoding.DER)
VERSION_3 = bytes.fromhex("a003020102")  # [0] EXPLICIT INTEGER 2 = v3


def with_version_4(der: bytes) -> bytes:
    at = der.find(VERSION_3)
    assert at > 0
    return der[:at] + bytes.fromhex("a003020103") + der[at + 5:]


def test_loads_der_pem_and_bundles():
    assert certs.load_der(IACA).subject == cert("iaca_cert").subject
    pem = cert("iaca_cert").public_bytes(Encoding.PEM)
    assert len(certs.load_any(pem + pem)) == 2
    assert certs.load_any(IACA)[0] == certs.load_pem_all(pem)[0]


def test_invalid_version_is_a_parse_error_and_a_value_error():
    with pytest.raises(certs.CertificateParseError) as err:
        certs.load_der(with_version_4(IACA))
    assert isinstance(err.value, ValueError)


def _serial_at(der: bytes) -> int:
    """Offset of the serial number's INTEGER in a certificate with short-form or 2-byte
    SEQUENCE lengths and a version field (a v3 certificate such as the IACA's)."""
    i = 0
    for _ in range(2):  # Certificate, then TBSCertificate
        assert der[i] == 0x30
        i += 2 + (der[i + 1] - 0x80 if der[i + 1] & 0x80 else 0)
    assert der[i] == 0xA0  # [0] version
    i += 2 + der[i + 1]
    assert der[i] == 0x02
    return i


def test_a_certificate_with_a_negative_serial_is_a_parse_error():
    i = _serial_at(IACA)
    negative = IACA[:i + 2] + bytes([IACA[i + 2] | 0x80]) + IACA[i + 3:]
    with warnings.catch_warnings():  # cryptography 50 still loads it, with a deprecation warning
        warnings.simplefilter("ignore")
        with pytest.raises(certs.CertificateParseError):
            certs.load_der(negative)


# a flip may make the serial negative: cryptography warns before we refuse (the test above)
@pytest.mark.filterwarnings("ignore:Parsed a serial number which wasn't positive")
@settings(max_examples=200, deadline=None)
@given(st.integers(0, len(IACA) - 1), st.integers(1, 255))
def test_any_flipped_certificate_loads_or_gives_parse_error(at, flip):
    der = IACA[:at] + bytes([IACA[at] ^ flip]) + IACA[at + 1:]
    try:
        loaded = certs.load_der(der)
        certs.public_key_of(loaded)
    except certs.CertificateParseError:
        return
    # what a check reads to say which certificate it refuses: never an exception once loaded
    loaded.subject.rfc4514_string(), loaded.issuer.rfc4514_string()


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_cms_with_an_invalid_version_certificate_is_a_jpki_error(key_type):
    _, signer_cert, der = sign_with(key_type)
    leaf = signer_cert.public_bytes(Encoding.DER)
    bad = der.replace(leaf, with_version_4(leaf))
    assert bad != der
    with pytest.raises(JpkiError):
        verify_detached_signature(bad, b"content")


def test_mdoc_verify_cli_exits_2_on_an_invalid_version_trust_anchor(files):  # noqa: F811
    files["iaca"].write_bytes(with_version_4(IACA))
    result = CliRunner().invoke(app, _args(files, "--at", "2021-01-01T00:00:00Z"))
    assert result.exit_code == 2, result.output


def _with_two_ekus() -> bytes:
    """A certificate whose extensions hold ExtendedKeyUsage twice (RFC 5280 4.2 forbids it):
    built with a second one under the neighbouring OID 2.5.29.38, then renamed in the DER
    (the signature no longer matters: the loader refuses it before any verification)."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "two ekus")])
    eku = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])
    now = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    der = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
           .serial_number(7).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
           .add_extension(eku, critical=False)
           .add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier("2.5.29.38"), eku.public_bytes()),
                          critical=False)
           .sign(key, hashes.SHA256()).public_bytes(Encoding.DER))
    assert der.count(bytes.fromhex("0603551d26")) == 1
    return der.replace(bytes.fromhex("0603551d26"), bytes.fromhex("0603551d25"))


def test_a_repeated_extension_is_refused_at_load_and_fails_an_mdoc_chain_check():
    """cryptography reads extensions lazily and raises DuplicateExtension (no ValueError)
    when first asked: that escaped the mdoc verifier's chain check (found by
    test_mdoc_fuzz with --hypothesis-seed=22). Refused at the boundary now."""
    import datetime as dt

    from protocols.mdoc.chain import EKU_MDL_DS, ChainError, verify_chain

    der = _with_two_ekus()
    with pytest.raises(certs.CertificateParseError, match="DuplicateExtension"):
        certs.load_der(der)
    with pytest.raises(ChainError, match="not a DER certificate"):
        verify_chain([der], [cert("iaca_cert")], dt.datetime(2025, 1, 1, 12, tzinfo=dt.UTC), eku=EKU_MDL_DS)


def _with_a_bit_string_in_the_issuer() -> bytes:
    """The IACA with its issuer's countryName re-typed from PrintableString (13) to BIT
    STRING (03), one byte: cryptography loads it and raises TypeError ("oid must be
    X500_UNIQUE_IDENTIFIER for BitString type") only when the issuer Name is first read."""
    country = bytes.fromhex("0603550406") + b"\x13"
    at = IACA.index(country) + len(country) - 1  # the first Name of the TBS is the issuer
    return IACA[:at] + b"\x03" + IACA[at + 1:]


def test_a_name_cryptography_cannot_read_is_refused_at_load_and_fails_an_mdoc_chain_check():
    """A DS certificate in an x5chain (unprotected: anyone on the way may flip it) whose
    issuer Name holds a BIT STRING attribute: verify_chain read the issuer Name to say
    that no anchor issued it and raised TypeError, which the reader reported as
    "unverifiable: TypeError: ..." instead of a failed issuer_certificate_chain check
    (found by the deep fuzz campaign). The names are read at load now, like the extensions."""
    import datetime as dt

    from protocols.mdoc.chain import EKU_MDL_DS, ChainError, verify_chain

    der = _with_a_bit_string_in_the_issuer()
    with pytest.raises(certs.CertificateParseError, match="names unreadable"):
        certs.load_der(der)
    with pytest.raises(ChainError, match="not a DER certificate"):
        verify_chain([der], [cert("iaca_cert")], dt.datetime(2025, 1, 1, 12, tzinfo=dt.UTC), eku=EKU_MDL_DS)
