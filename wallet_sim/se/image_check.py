"""The shape of a decoded SE image, checked once when it is loaded (specs/secure-element.md,
Persistence): every field the card's code reads, of the type and in the range it is read
as, so that a truncated, foreign or hand-edited ``se.cbor`` is refused at the door with
:class:`~wallet_sim.se.errors.SeStateError` naming the field, and no command of the card
(nor ``mcred phone show``) meets a ``TypeError`` half way.

What is checked is what the ISD and the runtime use: the CPLC and KDD, the life cycles,
the SCP03 keysets and their counters, the registry of applications, and the SCP11 keys
(the SE's private keys and certificates, the CA-KLOC key: parsed, as the commands that use
them would). An application's own ``state`` is its applet's to check when it restores it
(``Applet.restore`` raises, and the SE answers that applet's commands with 6F00). Fields
an image of this version may lack (made before they existed) are optional; fields this
code does not know are kept as they are."""

from __future__ import annotations

from collections.abc import Callable

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from protocols.gp.scp03 import SEQUENCE_COUNTER_MAX
from wallet_sim.se.errors import SeStateError

_CPLC_LENGTH = 42  # GPCS 2.3.1 Table H-2
_KDD_LENGTH = 10  # IC fabricator, type, serial number and batch identifier
_AES_KEY_LENGTHS = (16, 24, 32)


def check_image(state: object) -> None:
    """Raise :class:`SeStateError` ``"<field>: <what is wrong>"`` unless ``state`` (the
    decoded image, version already checked) has the shape the SE reads."""
    if type(state) is not dict:
        raise SeStateError(f"the image is a CBOR {cbor_kind(state)}, not a map")
    _bytes(state, "cplc", "cplc", exact=_CPLC_LENGTH)
    _bytes(state, "kdd", "kdd", exact=_KDD_LENGTH)
    _int(state, "card_life_cycle", "card_life_cycle", 0, 0xFF)
    isd = _map(state, "isd", "isd")
    _bytes(isd, "aid", "isd.aid", low=5, high=16)
    _int(isd, "life_cycle", "isd.life_cycle", 0, 0xFF)
    keysets = _map(state, "keysets", "keysets")
    if not keysets:
        raise SeStateError("keysets: none (an SE has at least one SCP03 keyset)")
    for kvn, keyset in keysets.items():
        where = f"keysets[{kvn!r}]"
        _key(kvn, where, 0x01, 0x7F)
        if type(keyset) is not dict:
            raise SeStateError(f"{where}: a CBOR {cbor_kind(keyset)}, not a map")
        for name in ("enc", "mac", "dek"):
            _bytes(keyset, name, f"{where}.{name}", among=_AES_KEY_LENGTHS)
    _int(state, "sequence_counter", "sequence_counter", 0, SEQUENCE_COUNTER_MAX)
    _int(state, "max_failed_authentications", "max_failed_authentications", 1, 0xFF)
    for kvn, fails in _map(state, "failed_authentications", "failed_authentications").items():
        where = f"failed_authentications[{kvn!r}]"
        _key(kvn, where, 0, 0xFF)
        if type(fails) is not int or fails < 0:
            raise SeStateError(f"{where}: {_shown(fails)} is not a count (an integer 0 or more)")
    for i, kvn in enumerate(_list(state, "blocked_kvns", "blocked_kvns")):
        if type(kvn) is not int or not 0 <= kvn <= 0xFF:
            raise SeStateError(f"blocked_kvns[{i}]: {_shown(kvn)} is not a key version number 0..255")
    for i, app in enumerate(_list(state, "applications", "applications")):
        where = f"applications[{i}]"
        if type(app) is not dict:
            raise SeStateError(f"{where}: a CBOR {cbor_kind(app)}, not an application record (a map)")
        _bytes(app, "aid", f"{where}.aid", low=1, high=16)
        _bytes(app, "module_aid", f"{where}.module_aid", low=1, high=16)
        _bytes(app, "elf_aid", f"{where}.elf_aid", low=1, high=16)
        _int(app, "life_cycle", f"{where}.life_cycle", 0, 0xFF)
        _bytes(app, "privileges", f"{where}.privileges", exact=3)
        if "state" not in app:
            raise SeStateError(f"{where}.state: missing")
    if "nvm_capacity" in state:
        _int(state, "nvm_capacity", "nvm_capacity", 1, 1 << 40)
    for name in ("scp11", "scp11a"):
        if name in state:
            _scp11_key(state, name)
    if "kloc" in state:
        _kloc(state)


def _scp11_key(state: dict, name: str) -> None:
    """The SE's SCP11 key pair (its private key, PKCS #8, P-256) and the maker's
    certificates for it (DER, the SE's own last)."""
    key = _map(state, name, name)
    _int(key, "kvn", f"{name}.kvn", 0, 0xFF)
    sk = _bytes(key, "sk", f"{name}.sk", low=1)
    _parsed(f"{name}.sk", "a P-256 private key (PKCS #8)",
            lambda: serialization.load_der_private_key(sk, None), ec.EllipticCurvePrivateKey)
    certs = _list(key, "certs", f"{name}.certs")
    if not certs:
        raise SeStateError(f"{name}.certs: none (the maker's certificate of the key is its last)")
    for i, cert in enumerate(certs):
        where = f"{name}.certs[{i}]"
        if type(cert) is not bytes:
            raise SeStateError(f"{where}: a CBOR {cbor_kind(cert)}, not a certificate (DER bytes)")
        _parsed(where, "an X.509 certificate (DER)", lambda c=cert: _certificate(c))


def _kloc(state: dict) -> None:
    """The CA-KLOC key: its KVN, SubjectPublicKeyInfo (P-256), and optionally its CA's key
    identifier and the OCE certificates' serial numbers it still accepts."""
    kloc = _map(state, "kloc", "kloc")
    _int(kloc, "kvn", "kloc.kvn", 0, 0xFF)
    pk = _bytes(kloc, "pk", "kloc.pk", low=1)
    _parsed("kloc.pk", "a P-256 public key (SubjectPublicKeyInfo)",
            lambda: serialization.load_der_public_key(pk), ec.EllipticCurvePublicKey)
    if "ski" in kloc:
        _bytes(kloc, "ski", "kloc.ski", low=1, high=64)
    if "allow" in kloc:
        for i, serial in enumerate(_list(kloc, "allow", "kloc.allow")):
            if type(serial) is not int or serial <= 0:
                raise SeStateError(f"kloc.allow[{i}]: {_shown(serial)} is not a certificate serial number")


# --- one field ---------------------------------------------------------------------------


def _get(record: dict, name: str, where: str) -> object:
    try:
        return record[name]
    except KeyError:
        raise SeStateError(f"{where}: missing") from None


def _int(record: dict, name: str, where: str, low: int, high: int) -> int:
    value = _get(record, name, where)
    if type(value) is not int or not low <= value <= high:  # not bool: True is no counter
        raise SeStateError(f"{where}: {_shown(value)} is not an integer {low}..{high}")
    return value


def _bytes(record: dict, name: str, where: str, *, exact: int | None = None, low: int = 0,
           high: int | None = None, among: tuple[int, ...] | None = None) -> bytes:
    value = _get(record, name, where)
    if type(value) is not bytes:
        raise SeStateError(f"{where}: {_shown(value)} is not a byte string")
    n = len(value)
    if exact is not None and n != exact:
        raise SeStateError(f"{where}: {n} bytes, not {exact}")
    if among is not None and n not in among:
        raise SeStateError(f"{where}: {n} bytes, not {' or '.join(map(str, among))}")
    if n < low or (high is not None and n > high):
        raise SeStateError(f"{where}: {n} bytes, not {low}..{high}" if high is not None
                           else f"{where}: {n} bytes, not at least {low}")
    return value


def _map(record: dict, name: str, where: str) -> dict:
    value = _get(record, name, where)
    if type(value) is not dict:
        raise SeStateError(f"{where}: a CBOR {cbor_kind(value)}, not a map")
    return value


def _list(record: dict, name: str, where: str) -> list:
    value = _get(record, name, where)
    if type(value) is not list:
        raise SeStateError(f"{where}: a CBOR {cbor_kind(value)}, not an array")
    return value


def _key(value: object, where: str, low: int, high: int) -> None:
    if type(value) is not int or not low <= value <= high:
        raise SeStateError(f"{where}: the key is not a key version number {low}..{high}")


def _certificate(der: bytes) -> x509.Certificate:
    """``der`` parsed, with the fields ``describe`` shows (cryptography reads them lazily)."""
    cert = x509.load_der_x509_certificate(der)
    cert.subject.rfc4514_string()
    cert.issuer.rfc4514_string()
    cert.not_valid_after_utc  # noqa: B018 - parsed on access
    return cert


def _parsed(where: str, what: str, parse: Callable[[], object], kind: type | None = None) -> None:
    try:
        obj = parse()
    except (ValueError, TypeError, UnsupportedAlgorithm, x509.InvalidVersion):
        raise SeStateError(f"{where}: not {what}") from None
    if kind is not None and (not isinstance(obj, kind) or obj.curve.name != "secp256r1"):  # type: ignore[attr-defined]
        raise SeStateError(f"{where}: not {what}")


def cbor_kind(value: object) -> str:
    """The CBOR type ``value`` was decoded from, in CBOR's words."""
    return {dict: "map", list: "array", bytes: "byte string", str: "text string", int: "integer",
            bool: "boolean", float: "float", type(None): "null"}.get(type(value), type(value).__name__)


def _shown(value: object) -> str:
    """``value`` as an error message quotes it: short, with its CBOR type."""
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{cbor_kind(value)} {text}"
