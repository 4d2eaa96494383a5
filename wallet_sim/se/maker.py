"""The SE maker: the lab's manufacturer of secure elements, which certifies each SE's SCP11
key at manufacture (GPCS Amendment F: CERT.SD.ECKA, X.509 here).

An SE makes its key pair SK.SD.ECKA / PK.SD.ECKA (P-256) at manufacture; the private key
goes into the SE's image and nowhere else. The maker signs a certificate for the public key
that names the SE by its key diversification data (the identity a TSM records), and the SE
keeps it in its certificate store (GET DATA BF21). A TSM that trusts the maker's root
authenticates the SE before it sends it anything secret (specs/secure-element.md "SCP11b",
specs/tsm.md "First contact").

The maker's CA lives in ``<home>/se-maker/``: ``root.pem``, the certificate a TSM is given
to trust, and ``ca-key.pem`` (0600), its private key, which only the factory reads. Both
are made once, on the first phone, and atomically (two first phones at once make one CA).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

MAKER_DIR = "se-maker"
ROOT_FILE = "root.pem"
KEY_FILE = "ca-key.pem"
MAKER_NAME = "mcred lab SE maker"
#: how long a maker root and an SE certificate are valid (an eSE lives as long as its phone)
ROOT_YEARS = 30
SE_CERT_YEARS = 20
#: certificates are valid from a day before they are made: a TSM whose clock is behind the
#: factory's still accepts an SE made a moment ago
CLOCK_SKEW = dt.timedelta(days=1)


@dataclass(frozen=True)
class SeMaker:
    """The maker's CA, loaded: its key signs SE certificates, its root is what TSMs trust."""

    root: x509.Certificate
    _key: ec.EllipticCurvePrivateKey

    def __repr__(self) -> str:  # never print the key
        return f"SeMaker({self.root.subject.rfc4514_string()})"

    def certify(self, public_key: ec.EllipticCurvePublicKey, kdd: bytes, cplc_serial: bytes,
                scp: str = "SCP11b") -> bytes:
        """An X.509 certificate (DER) for an SE's PK.SD.ECKA of variant ``scp``, naming the
        SE by its key diversification data (subject serialNumber, hexadecimal) and IC
        serial number."""
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        subject = x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, MAKER_NAME),
            x509.NameAttribute(NameOID.COMMON_NAME, f"SE {cplc_serial.hex().upper()} {scp}"),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, kdd.hex().upper()),
        ])
        cert = (x509.CertificateBuilder()
                .subject_name(subject).issuer_name(self.root.subject).public_key(public_key)
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - CLOCK_SKEW)
                .not_valid_after(now + dt.timedelta(days=365 * SE_CERT_YEARS))
                .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                             key_encipherment=False, data_encipherment=False,
                                             key_agreement=True, key_cert_sign=False, crl_sign=False,
                                             encipher_only=False, decipher_only=False), critical=True)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                               critical=False)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
                .sign(self._key, hashes.SHA256()))
        return cert.public_bytes(serialization.Encoding.DER)


def maker_dir(home: Path) -> Path:
    return Path(home) / MAKER_DIR


def root_path(home: Path) -> Path:
    """Where the maker's root certificate is (PEM): the trust anchor a TSM is given."""
    return maker_dir(home) / ROOT_FILE


def se_maker(home: Path) -> SeMaker:
    """The maker of ``home``'s phones, made on first use."""
    d = maker_dir(home)
    if not (d / KEY_FILE).is_file():
        _make(d)
    key = serialization.load_pem_private_key((d / KEY_FILE).read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return SeMaker(x509.load_pem_x509_certificate((d / ROOT_FILE).read_bytes()), key)


def _make(d: Path) -> None:
    d.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, MAKER_NAME),
                      x509.NameAttribute(NameOID.COMMON_NAME, f"{MAKER_NAME} root")])
    root = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(now + dt.timedelta(days=365 * ROOT_YEARS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=True, crl_sign=True,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    tmp = Path(tempfile.mkdtemp(prefix=".se-maker-", dir=d.parent))
    try:
        fd = os.open(tmp / KEY_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
        # anyone may read the root, only its owner replace it, whatever the umask
        fd = os.open(tmp / ROOT_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(root.public_bytes(serialization.Encoding.PEM))
        os.chmod(tmp, 0o755)
        with contextlib.suppress(OSError):  # another process made it first: theirs stands
            os.rename(tmp, d)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
