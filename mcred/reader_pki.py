"""A reader's own certificate (``mcred reader certificate``): the reader CA a wallet trusts
for reader authentication, and the reader authentication certificate (ISO/IEC 18013-5
Annex B.1.7, EKU 1.0.18013.5.1.6) that ``mcred reader serve --reader-cert/--reader-key``
signs readerAuth, readerAuthAll and OpenID4VP request objects with. The profiles are
:func:`protocols.iaca.reader_ca_builder` and :func:`protocols.iaca.reader_auth_builder`.

Files (PEM): ``reader-ca.pem`` / ``reader-ca.key`` when a CA is made here (or the CA given),
``reader.pem`` (the reader certificate alone: the wallet holds the root, which readerAuth's
x5chain leaves out) and ``reader.key``. Private keys are written mode 0600 and never over an existing file.

``mcred reader crl`` (:func:`update_reader_crl`) is the reader CA's CRL (RFC 5280, DER): a
reader certificate revoked there is not trusted by a wallet that holds the list
(``--reader-crl``, :mod:`wallet_sim.reader_crls`).
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from protocols import crl as ca_crl
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


def _read(option: str, path: Path) -> bytes:
    """The bytes of the file an option names; :class:`ReaderPkiError` naming the option and the
    file it cannot read (``--ca-cert ca.pem: no such file``)."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise ReaderPkiError(f"{option} {path}: no such file") from None
    except OSError as exc:
        raise ReaderPkiError(f"{option} {path}: cannot read it ({exc.strerror or exc})") from None


def _load_ca(cert_path: Path, key_path: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert_pem, key_pem = _read("--ca-cert", cert_path), _read("--ca-key", key_path)
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise ReaderPkiError(f"--ca-cert {cert_path}: not a PEM certificate ({exc})") from None
    try:
        key = serialization.load_pem_private_key(key_pem, None)
    except (ValueError, TypeError) as exc:
        raise ReaderPkiError(f"--ca-key {key_path}: not an unencrypted PEM private key ({exc})") from None
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
    if out_dir.exists() and not out_dir.is_dir():
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
    try:  # made (parents too) once the certificates are: a refused one leaves no directory behind
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReaderPkiError(f"--out-dir {out_dir}: cannot make it ({exc.strerror or exc})") from None
    if ca is None:
        _write(paths["reader-ca.key"], _pem_key(ca_key), secret=True)
        _write(paths["reader-ca.pem"], ca_cert.public_bytes(pem), secret=False)
    _write(paths["reader.key"], _pem_key(key), secret=True)
    _write(paths["reader.pem"], cert.public_bytes(pem), secret=False)
    return ReaderFiles(paths["reader-ca.pem"] if ca is None else ca[0], paths["reader-ca.key"] if ca is None else None,
                       paths["reader.pem"], paths["reader.key"], cert.subject.rfc4514_string(), cert.not_valid_after_utc)


CRL_DAYS = 7


@dataclass(frozen=True)
class ReaderCrlUpdate:
    """What ``mcred reader crl`` wrote: the CRL file, its number and nextUpdate, every entry,
    and which of the certificates asked for were newly listed or already were."""

    path: Path
    number: int
    this_update: dt.datetime
    next_update: dt.datetime
    entries: tuple[ca_crl.Revoked, ...]
    added: tuple[int, ...]
    already: tuple[int, ...]


def update_reader_crl(
    crl_path: Path | str,
    ca: tuple[Path | str, Path | str],
    *,
    revoke: tuple[Path | str, ...] = (),
    reason: str = "unspecified",
    days: int = CRL_DAYS,
    now: dt.datetime | None = None,
) -> ReaderCrlUpdate:
    """Issue the reader CA's CRL anew at ``crl_path`` (DER, RFC 5280): the entries of the CRL
    already there (which must be this CA's: its name and a signature by its key), the
    certificates of ``revoke`` (PEM; each must be this CA's) added with ``reason`` and the
    time now, thisUpdate now, nextUpdate ``days`` later, the cRLNumber one above the old.
    Written whole or not at all (a temporary file renamed over the old). Raises
    :class:`ReaderPkiError`."""
    if reason not in ca_crl.REASONS:
        raise ReaderPkiError(f"--reason {reason!r}: one of {', '.join(ca_crl.REASONS)}")
    if days < 1:
        raise ReaderPkiError(f"--days {days}: at least 1")
    crl_path = Path(crl_path)
    ca_cert, ca_key = _load_ca(Path(ca[0]), Path(ca[1]))
    now = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).replace(microsecond=0)
    entries: dict[int, ca_crl.Revoked] = {}
    old_number = 0
    if crl_path.exists():
        try:
            old = ca_crl.load(crl_path.read_bytes())
        except (OSError, ca_crl.CrlError) as exc:
            raise ReaderPkiError(f"{crl_path}: {exc}") from None
        if old.issuer != ca_cert.subject or not old.is_signature_valid(ca_key.public_key()):
            raise ReaderPkiError(f"{crl_path} is not a CRL of {ca_cert.subject.rfc4514_string()} (its issuer or "
                                 "signature): not overwritten")
        try:
            entries = {e.serial_number: ca_crl.Revoked.of(e) for e in old}
        except ca_crl.CrlError as exc:
            raise ReaderPkiError(f"{crl_path}: {exc}") from None
        old_number = ca_crl.number(old) or 0
    added, already = [], []
    for path in revoke:
        try:
            certs = x509.load_pem_x509_certificates(Path(path).read_bytes())
        except (OSError, ValueError) as exc:
            raise ReaderPkiError(f"--revoke {path}: {exc}") from None
        for cert in certs:
            if cert.issuer != ca_cert.subject or not _issued_by(cert, ca_cert):
                raise ReaderPkiError(f"--revoke {path}: {cert.subject.rfc4514_string()} was not issued by "
                                     f"{ca_cert.subject.rfc4514_string()}")
            if cert.serial_number in entries:
                already.append(cert.serial_number)
            else:
                entries[cert.serial_number] = ca_crl.Revoked(cert.serial_number, now, reason)
                added.append(cert.serial_number)
    listed = tuple(sorted(entries.values(), key=lambda r: (r.revoked_at, r.serial_number)))
    number = old_number + 1
    try:
        builder = ca_crl.crl_builder(ca_cert, number=number, this_update=now,
                                       next_update=dt.timedelta(days=days), revoked=listed)
    except ca_crl.CrlError as exc:
        raise ReaderPkiError(str(exc)) from None
    crl = builder.sign(ca_key, iaca.hash_for_key(ca_key))
    tmp = crl_path.with_name(f".{crl_path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(crl.public_bytes(serialization.Encoding.DER))
        os.replace(tmp, crl_path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ReaderPkiError(f"{crl_path}: {exc}") from None
    return ReaderCrlUpdate(crl_path, number, now, now + dt.timedelta(days=days), listed, tuple(added),
                           tuple(already))


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
