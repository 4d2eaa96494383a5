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
        certs.public_key_of(certs.load_der(der))
    except certs.CertificateParseError:
        pass


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
