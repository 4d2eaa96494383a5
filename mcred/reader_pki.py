"""A reader's own certificate (``mcred reader certificate``): the reader CA a wallet trusts
for reader authentication, and the reader authentication certificate (ISO/IEC 18013-5
Annex B.1.7, EKU 1.0.18013.5.1.6) that ``mcred reader serve --reader-cert/--reader-key``
signs readerAuth, readerAuthAll and OpenID4VP request objects with. The profiles are
:func:`protocols.iaca.reader_ca_builder` and :func:`protocols.iaca.reader_auth_builder`.

Files (PEM): ``reader-ca.pem`` / ``reader-ca.key`` when a CA is made here (or the CA given),
``reader.pem`` (the reader certificate alone: the wallet holds the root, which readerAuth's
x5chain leaves out) and ``reader.key``. Private keys are written mode 0600 and never over an existing file.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from protocols import iaca

CURVES = {"p256": ec.SECP256R1, "p384": ec.SECP384R1}
CA_YEARS = 10


class ReaderPkiError(ValueError):
    """The reader certificate cannot be made: a file exists, the CA is unusable, a profile
    rule would be broken; the message says which."""


@dataclass(frozen=True)
class ReaderFiles:
    ca_cert: Path
    ca_key: Path | None
    """None when the CA was given (its key stays where it is)"""
    cert: Path
    key: Path
    subject: str
    not_after: dt.datetime


def _write(path: Path, data: bytes, *, secret: bool) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if secret else 0o644)
    except FileExistsError:
        raise ReaderPkiError(f"{path} exists: not overwritten (choose another --out-dir)") from None
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _load_ca(cert_path: Path, key_path: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    except (OSError, ValueError, TypeError) as exc:
        raise ReaderPkiError(f"--ca-cert / --ca-key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ReaderPkiError(f"--ca-key: an EC private key, got {type(key).__name__}")
    if key.public_key().public_numbers() != cert.public_key().public_numbers():
        raise ReaderPkiError("--ca-key is not the key of --ca-cert")
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise ReaderPkiError(f"--ca-cert {cert.subject.rfc4514_string()} is not a CA certificate (basicConstraints)")
    return cert, key


def _start(now: dt.datetime | None) -> dt.datetime:
    """Validity starts a little before now, for the clocks of those who check it."""
    return (now or dt.datetime.now(dt.UTC)).replace(microsecond=0) - dt.timedelta(minutes=5)


def new_reader_ca(common_name: str, *, curve: str = "p256", crl_uri: str | None = None, years: int = CA_YEARS,
                  now: dt.datetime | None = None) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A reader CA and its key, in memory. Raises :class:`protocols.iaca.IacaProfileError`."""
    start = _start(now)
    key = ec.generate_private_key(CURVES[curve]())
    return iaca.sign(iaca.reader_ca_builder(key.public_key(), common_name=common_name, not_before=start,
                                            not_after=start + dt.timedelta(days=365 * years), crl_uri=crl_uri),
                     key), key


def issue_reader_certificate(ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, common_name: str, *,
                             dns_names: tuple[str, ...] = (), days: int = 365, curve: str = "p256",
                             crl_uri: str | None = None, now: dt.datetime | None = None,
                             ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A reader authentication certificate under the CA, and its key, in memory. Raises
    :class:`protocols.iaca.IacaProfileError`."""
    start = _start(now)
    key = ec.generate_private_key(CURVES[curve]())
    return iaca.sign(iaca.reader_auth_builder(key.public_key(), ca_cert, common_name=common_name, not_before=start,
                                              not_after=start + dt.timedelta(days=days), dns_names=dns_names,
                                              crl_uri=crl_uri), ca_key), key


def make_reader_certificate(
    out_dir: Path,
    *,
    common_name: str,
    dns_names: tuple[str, ...] = (),
    days: int = 365,
    curve: str = "p256",
    ca: tuple[Path, Path] | None = None,
    ca_common_name: str = "mcred reader CA",
    crl_uri: str | None = None,
    now: dt.datetime | None = None,
) -> ReaderFiles:
    """Make the reader certificate (and its CA unless ``ca`` = (cert, key) is given) into
    ``out_dir``. Raises :class:`ReaderPkiError`."""
    if curve not in CURVES:
        raise ReaderPkiError(f"--curve {curve!r}: one of {', '.join(CURVES)}")
    if not out_dir.is_dir():
        raise ReaderPkiError(f"--out-dir {out_dir}: not a directory")
    try:
        if ca is None:
            ca_cert, ca_key = new_reader_ca(ca_common_name, curve=curve, crl_uri=crl_uri, now=now)
        else:
            ca_cert, ca_key = _load_ca(*ca)
        cert, key = issue_reader_certificate(ca_cert, ca_key, common_name, dns_names=tuple(dns_names), days=days,
                                             curve=curve, crl_uri=crl_uri, now=now)
    except iaca.IacaProfileError as exc:
        raise ReaderPkiError(str(exc)) from None
    pem = serialization.Encoding.PEM
    paths = {name: out_dir / name for name in ("reader-ca.pem", "reader-ca.key", "reader.pem", "reader.key")}
    wanted = ["reader.pem", "reader.key"] + (["reader-ca.pem", "reader-ca.key"] if ca is None else [])
    for name in wanted:
        if paths[name].exists():
            raise ReaderPkiError(f"{paths[name]} exists: not overwritten (choose another --out-dir)")
    if ca is None:
        _write(paths["reader-ca.key"], _pem_key(ca_key), secret=True)
        _write(paths["reader-ca.pem"], ca_cert.public_bytes(pem), secret=False)
    _write(paths["reader.key"], _pem_key(key), secret=True)
    _write(paths["reader.pem"], cert.public_bytes(pem), secret=False)
    return ReaderFiles(paths["reader-ca.pem"] if ca is None else ca[0], paths["reader-ca.key"] if ca is None else None,
                       paths["reader.pem"], paths["reader.key"], cert.subject.rfc4514_string(), cert.not_valid_after_utc)
