"""Certificate serial numbers typed by an operator: every form mcred and openssl print is
read back as the same number (protocols.certs.parse_serial)."""

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

from protocols.certs import MAX_SERIAL, SerialError, parse_serial, serial_text

serials = st.integers(min_value=1, max_value=MAX_SERIAL - 1)


def _octets(value: int) -> str:
    text = format(value, "x")
    return ("0" + text) if len(text) % 2 else text


@settings(max_examples=200, deadline=None)
@given(serials)
def test_every_printed_form_reads_back(value):
    ours = serial_text(value)
    assert ours == ours.lower() and not ours.startswith("0")
    octets = _octets(value)
    for form in (ours, ours.upper(), "0x" + ours, "0X" + ours.upper(), "serial=" + octets.upper(),
                 ":".join(octets[i:i + 2] for i in range(0, len(octets), 2)),
                 " ".join(octets[i:i + 2] for i in range(0, len(octets), 2)), "  00" + ours + "\n"):
        assert parse_serial(form) == value, form


@pytest.mark.parametrize(("text", "said"), [
    ("", "no hexadecimal digits"), ("0x", "no hexadecimal digits"), ("serial=", "no hexadecimal digits"),
    ("12g4", "not hexadecimal"), ("-1f", "not hexadecimal"), ("1f;", "not hexadecimal"),
    ("0", "positive"), ("00:00", "positive"), ("1" + "0" * 40, "longer than 20 octets"),
])
def test_what_is_no_serial_is_said(text, said):
    with pytest.raises(SerialError, match=said):
        parse_serial(text)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_openssls_forms_of_a_serial_with_a_leading_zero_nibble(tmp_path):
    """``openssl x509 -serial`` prints whole octets in upper case, so a serial whose first
    nibble is zero starts with 0 there and not in mcred's listings; ``-text`` separates the
    octets with colons. Both read back as the number in the certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "serial test")])
    now = dt.datetime.now(dt.UTC)
    value = 0x0A1B2C3D4E5F60718293A4B5C6D7E8F901234567  # 20 octets, first nibble zero
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(value).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    pem = tmp_path / "c.pem"
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    printed = subprocess.run(["openssl", "x509", "-in", str(pem), "-noout", "-serial"], capture_output=True,
                             text=True, check=True).stdout
    assert printed.startswith("serial=0A1B")
    assert parse_serial(printed) == value
    text = subprocess.run(["openssl", "x509", "-in", str(pem), "-noout", "-text"], capture_output=True,
                          text=True, check=True).stdout
    lines = text.splitlines()
    colon_form = lines[[i for i, line in enumerate(lines) if "Serial Number:" in line][0] + 1].strip()
    assert colon_form.startswith("0a:1b:")
    assert parse_serial(colon_form) == value
    assert serial_text(value) == "a1b2c3d4e5f60718293a4b5c6d7e8f901234567"
