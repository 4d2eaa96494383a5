"""The TSM as an SCP11a off-card entity (OCE): the key and certificate chain with which it
proves itself to a secure element before it loads keys (GPCS Amendment F; specs/tsm.md
"First contact").

An SE whose issuer put a CA key into it at manufacture (PK.CA-KLOC.ECDSA: the CA of the
OCEs allowed to load keys) takes key loading only from an OCE that CA certifies. The TSM's
operator runs that CA: it certifies the TSM's key-agreement key SK.OCE.ECKA / PK.OCE.ECKA,
and its public key is what the phone factory puts into each SE.

The lab's OCE lives in ``<home>/tsm-oce/``: ``ca.pem`` (the KLOC CA's certificate; the
factory is given its public key), ``ca-key.pem`` (0600), ``oce.pem`` (the TSM's
certificate) and ``oce-key.pem`` (0600, SK.OCE.ECKA). All four are made together on first
use, atomically (two first uses at once make one OCE). The private key stays behind
:attr:`OceCredential.exchange`: what uses the credential computes ECDH with it and never
holds the key. With ``MCRED_TSM_MASTER_KEY=pkcs11`` the TSM's OCE key is generated and used
in the token instead (:class:`tsm.hsm.HsmOceKey`) and ``oce.pem`` certifies that key; the
KLOC CA's key stays a file here, like the SE maker's.

**Rotating the KLOC CA** (:func:`rotate_kloc_ca`: its key leaked, or it is due): a new CA
certifies the same SK.OCE.ECKA; the old CA's certificate and the TSM's certificate from it
move to ``retired/<the old CA's SKI>/`` (the old CA's key is deleted: nothing is certified
under it again). The TSM keeps showing a retired chain to an SE that still names that CA
(GET DATA FF33) and replaces the SE's CA-KLOC key with the new CA's in the same session
(specs/tsm.md, "Rotating the KLOC CA").
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from protocols.gp.scp11 import KLOC_KID

OCE_DIR = "tsm-oce"
CA_FILE, CA_KEY_FILE, OCE_FILE, OCE_KEY_FILE = "ca.pem", "ca-key.pem", "oce.pem", "oce-key.pem"
RETIRED_DIR = "retired"
OCE_NAME = "mcred lab TSM"
#: the CA-KLOC key's version on the SEs the lab's factory makes
KLOC_KVN = 0x01
CA_YEARS, OCE_YEARS = 30, 10
CLOCK_SKEW = dt.timedelta(days=1)


class OceError(ValueError):
    """The TSM's OCE credential cannot be loaded; the message names the file and why."""


@dataclass(frozen=True)
class OceCredential:
    """What the TSM shows an SE in SCP11a: its certificate chain (DER, from below the
    card's CA-KLOC key down to its own certificate, leaf last), the CA-KLOC key reference
    the chain verifies under on the card, and ECDH with SK.OCE.ECKA."""

    certificates: tuple[bytes, ...]
    exchange: Callable[[ec.EllipticCurvePublicKey], bytes] = field(repr=False)
    kloc_kid: int = KLOC_KID
    kloc_kvn: int = KLOC_KVN
    #: the CA the chain verifies under: its public key (what the TSM puts into an SE as
    #: PK.CA-KLOC.ECDSA when it rotates the SE to this CA) and its identifier (the Subject Key
    #: Identifier GET DATA FF33 names it by); None when not known
    ca_key: ec.EllipticCurvePublicKey | None = field(default=None, repr=False)
    ca_ski: bytes | None = None

    def is_named_by(self, ski: bytes) -> bool:
        """Whether ``ski``, a CA identifier an SE gives (GET DATA FF33), names this chain's
        CA: its certificate's Subject Key Identifier, or RFC 5280's first method over its key
        (what an SE computes when nobody told it the CA's own)."""
        if self.ca_key is None:
            return False
        return ski in (self.ca_ski, x509.SubjectKeyIdentifier.from_public_key(self.ca_key).digest)

    @property
    def certificate(self) -> x509.Certificate:
        """The TSM's own certificate (the chain's leaf)."""
        return x509.load_der_x509_certificate(self.certificates[-1])

    def __repr__(self) -> str:  # never print the key
        return f"OceCredential({self.certificate.subject.rfc4514_string()})"


def oce_dir(home: Path) -> Path:
    return Path(home) / OCE_DIR


def kloc_certificate(home: Path) -> x509.Certificate:
    """The KLOC CA's certificate, made on first use: its public key is what the factory
    puts into an SE as PK.CA-KLOC.ECDSA."""
    d = oce_dir(home)
    if not (d / OCE_KEY_FILE).is_file():
        _make(d)
    with _locked(d, shared=True):
        return _load_cert(d / CA_FILE)


class OceKey(Protocol):
    """SK.OCE.ECKA wherever it is kept (:class:`tsm.hsm.HsmOceKey`: in a PKCS#11 token)."""

    def public_key(self) -> ec.EllipticCurvePublicKey: ...

    def exchange(self, peer: ec.EllipticCurvePublicKey) -> bytes: ...


def lab_oce(home: Path, key: OceKey | None = None) -> OceCredential:
    """The lab TSM's OCE credential, made on first use: with the file key
    ``oce-key.pem``, or with ``key`` kept elsewhere (an HSM), which the lab's KLOC CA then
    certifies (``oce.pem`` is issued again whenever it certifies another key than the one
    in use)."""
    d = oce_dir(home)
    if not (d / OCE_KEY_FILE).is_file():
        _make(d)
    with _locked(d, shared=True):
        if key is not None:
            return _held_elsewhere(d, key)
        cert = _load_cert(d / OCE_FILE)
        private = _file_key(d)
        if private.public_key() != cert.public_key():
            raise OceError(f"{d / OCE_KEY_FILE} is not the key of {d / OCE_FILE}")

        return _credential(_load_cert(d / CA_FILE), cert, _ecdh(private))


def retired_oce(home: Path, key: OceKey | None = None) -> tuple[OceCredential, ...]:
    """The TSM's chains from the KLOC CAs it rotated away from (:func:`rotate_kloc_ca`),
    oldest CA first (an SE names the one it takes: the order chooses nothing), each with
    the same SK.OCE.ECKA as :func:`lab_oce` (the file key, or
    ``key``). A retired certificate of another key than the one in use (the key moved into
    an HSM after the rotation) cannot be shown and is left out."""
    d = oce_dir(home) / RETIRED_DIR
    with _locked(oce_dir(home), shared=True):
        if not d.is_dir():
            return ()
        if key is not None:
            public, exchange = key.public_key(), key.exchange
        else:
            private = _file_key(oce_dir(home))
            public, exchange = private.public_key(), _ecdh(private)

        gens = [(_load_cert(g / CA_FILE), _load_cert(g / OCE_FILE))
                for g in d.iterdir() if g.is_dir() and not g.name.startswith(".")]
    gens.sort(key=lambda pair: pair[0].not_valid_before_utc)
    return tuple(_credential(ca, cert, exchange) for ca, cert in gens if cert.public_key() == public)


def rotate_kloc_ca(home: Path, key: OceKey | None = None) -> tuple[x509.Certificate, x509.Certificate]:
    """Replace the lab's KLOC CA by a new one (its key leaked, or it is due): the new CA
    certifies the TSM's key in use (the file key, or ``key``); the old CA's certificate and
    the TSM's certificate from it move to ``retired/<old SKI>/``, and the old CA's key is
    deleted. Returns (old CA, new CA) certificates. The directory is replaced whole, so a
    crash leaves the old CA or the new one, never half of each; one rotation at a time
    (an exclusive lock beside the directory)."""
    d = oce_dir(home)
    if not (d / OCE_KEY_FILE).is_file():
        _make(d)
    with _locked(d):
        _recover(d)
        old_ca = _load_cert(d / CA_FILE)
        public = key.public_key() if key is not None else _file_key(d).public_key()
        ca_key, ca = _new_ca()
        oce = _oce_certificate(ca.subject, ca_key, public)
        tmp = Path(tempfile.mkdtemp(prefix=".tsm-oce-", dir=d.parent))
        try:
            shutil.copytree(d, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns(CA_KEY_FILE))
            gen = tmp / RETIRED_DIR / ca_ski(old_ca).hex()
            gen.mkdir(parents=True, exist_ok=True, mode=0o755)
            shutil.copy2(d / CA_FILE, gen / CA_FILE)
            shutil.copy2(d / OCE_FILE, gen / OCE_FILE)
            _write_key(tmp / CA_KEY_FILE, ca_key)
            _write_public(tmp / CA_FILE, ca)
            _write_public(tmp / OCE_FILE, oce)
            os.chmod(tmp, 0o755)
            aside = _aside(d)
            os.rename(d, aside)  # from here until the next rename, _recover puts it back
            os.rename(tmp, d)
            shutil.rmtree(aside, ignore_errors=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return old_ca, ca


@contextlib.contextmanager
def _locked(d: Path, *, shared: bool = False):  # noqa: ANN202 - an iterator of None
    """A lock file beside the directory (flock; threads and processes alike): a rotation,
    and a first use that may find the directory between a rotation's two renames, hold it
    alone; readers of the credentials share it, so that none reads a directory being
    replaced. Never taken twice by one caller (a second flock on another descriptor would
    wait for the first)."""
    import fcntl

    d.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with os.fdopen(os.open(d.parent / f".{OCE_DIR}.lock", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600),
                   "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield


def _aside(d: Path) -> Path:
    return d.parent / f".{OCE_DIR}.rotating"


def _recover(d: Path) -> None:
    """A rotation that stopped between its two renames left the old directory aside: put it
    back (nothing was rotated); one that stopped after them left a copy aside: drop it."""
    aside = _aside(d)
    if aside.is_dir():
        if d.is_dir():
            shutil.rmtree(aside, ignore_errors=True)
        else:
            os.rename(aside, d)


def _file_key(d: Path) -> ec.EllipticCurvePrivateKey:
    path = d / OCE_KEY_FILE
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), None)
    except (OSError, ValueError, TypeError) as exc:
        raise OceError(f"{path}: not a readable PEM private key ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise OceError(f"{path}: SK.OCE.ECKA must be a P-256 key")
    return key


def _ecdh(private: ec.EllipticCurvePrivateKey) -> Callable[[ec.EllipticCurvePublicKey], bytes]:
    """:attr:`OceCredential.exchange` with the file key."""
    def exchange(peer: ec.EllipticCurvePublicKey) -> bytes:
        return private.exchange(ec.ECDH(), peer)

    return exchange


def ca_ski(cert: x509.Certificate) -> bytes:
    """A CA's identifier, as GET DATA FF33 names it: its Subject Key Identifier (RFC 5280's
    first method when it carries none)."""
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest


def _credential(ca: x509.Certificate, cert: x509.Certificate,
                exchange: Callable[[ec.EllipticCurvePublicKey], bytes]) -> OceCredential:
    ca_key = ca.public_key()
    if not isinstance(ca_key, ec.EllipticCurvePublicKey) or ca_key.curve.name != "secp256r1":
        raise OceError(f"the KLOC CA {ca.subject.rfc4514_string()} must have a P-256 key (PK.CA-KLOC.ECDSA)")
    return OceCredential((cert.public_bytes(serialization.Encoding.DER),), exchange,
                         ca_key=ca_key, ca_ski=ca_ski(ca))


def _held_elsewhere(d: Path, key: OceKey) -> OceCredential:
    public = key.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey) or public.curve.name != "secp256r1":
        raise OceError("SK.OCE.ECKA must be a P-256 key")
    cert = _load_cert(d / OCE_FILE)
    if cert.public_key() != public:
        try:
            ca_key = serialization.load_pem_private_key((d / CA_KEY_FILE).read_bytes(), None)
        except (OSError, ValueError, TypeError) as exc:
            raise OceError(f"{d / CA_KEY_FILE}: not a readable PEM private key ({exc})") from None
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
        cert = _oce_certificate(_load_cert(d / CA_FILE).subject, ca_key, public)
        tmp = d / f".{OCE_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        _write_public(tmp, cert)
        os.replace(tmp, d / OCE_FILE)
    return _credential(_load_cert(d / CA_FILE), cert, key.exchange)


def _load_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise OceError(f"{path}: not a readable PEM certificate ({exc})") from None


def _key_usage(*, agreement: bool = False, cert_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=agreement, key_cert_sign=cert_sign,
                         crl_sign=cert_sign, encipher_only=False, decipher_only=False)


def _oce_certificate(ca_name: x509.Name, ca_key: ec.EllipticCurvePrivateKey,
                     public: ec.EllipticCurvePublicKey) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    return (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, OCE_NAME),
                                     x509.NameAttribute(NameOID.COMMON_NAME, f"{OCE_NAME} OCE (SCP11a)")]))
            .issuer_name(ca_name).public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW).not_valid_after(now + dt.timedelta(days=365 * OCE_YEARS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(agreement=True), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(ca_key, hashes.SHA256()))


def _new_ca() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    # the serial number in the name tells a rotated CA from the one before it
    serial = x509.random_serial_number()
    ca_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, OCE_NAME),
                         x509.NameAttribute(NameOID.COMMON_NAME, f"{OCE_NAME} KLOC CA"),
                         x509.NameAttribute(NameOID.SERIAL_NUMBER, f"{serial:X}"[:16])])
    ca = (x509.CertificateBuilder()
          .subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(serial)
          .not_valid_before(now - CLOCK_SKEW).not_valid_after(now + dt.timedelta(days=365 * CA_YEARS))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(_key_usage(cert_sign=True), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    return ca_key, ca


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))


def _write_public(path: Path, cert: x509.Certificate) -> None:
    """A certificate in a file, 0644 whatever the umask: anyone may read it, only its owner
    replace it (a TSM's CA that others could rewrite would name their OCE)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(fd, 0o644)
        f.write(cert.public_bytes(serialization.Encoding.PEM))


def _make(d: Path) -> None:
    with _locked(d):  # between a rotation's two renames the directory is missing: wait for it
        _recover(d)
        if (d / OCE_KEY_FILE).is_file():  # made meanwhile, or put back after a rotation that stopped
            return
        _make_now(d)


def _make_now(d: Path) -> None:
    ca_key, ca = _new_ca()
    oce_key = ec.generate_private_key(ec.SECP256R1())
    oce = _oce_certificate(ca.subject, ca_key, oce_key.public_key())
    tmp = Path(tempfile.mkdtemp(prefix=".tsm-oce-", dir=d.parent))
    try:
        _write_key(tmp / CA_KEY_FILE, ca_key)
        _write_key(tmp / OCE_KEY_FILE, oce_key)
        _write_public(tmp / CA_FILE, ca)
        _write_public(tmp / OCE_FILE, oce)
        os.chmod(tmp, 0o755)
        with contextlib.suppress(OSError):  # another process made it first: theirs stands
            os.rename(tmp, d)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
