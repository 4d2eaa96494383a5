"""Per-SE static SCP03 keys diversified from a master key (specs/tsm.md, "Key
diversification"), and the master key store.

Scheme: NIST SP 800-108 KDF in counter mode with AES-CMAC as PRF (``cryptography``'s
``KBKDFCMAC``), key = the master key (AES-128/192/256), label = ``"mcred-tsm/" + role``
for role ENC, MAC, DEK, context = the SE's 10-byte key diversification data (the first
field of its INITIALIZE UPDATE response, Amendment D Table 7-2), output length = the
master key's length. Distinct labels give independent keys per role; distinct SEs give
independent keysets, so one extracted SE key set says nothing about another SE.
:func:`kbkdf_counter` is the same construction around a PRF computed elsewhere: the HSM
master key (``tsm.hsm``) runs it with the token's AES-CMAC.

The master key stays inside :class:`MasterKey` objects: callers ask for an SE's keyset or
for sealing job secrets, never for the master key. :class:`FileMasterKey` keeps it in a
0600 file under the data directory; ``tsm.hsm.HsmMasterKey`` keeps it in a PKCS#11 token.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.cmac import CMAC
from cryptography.hazmat.primitives.kdf.kbkdf import KBKDFCMAC, CounterLocation, Mode

from protocols.gp.scp03 import StaticKeys
from tsm.errors import MasterKeyError, SealError

#: The GlobalPlatform test key a factory-fresh SE holds as keyset 0x30 (ENC = MAC = DEK).
FACTORY_KVN = 0x30
FACTORY_KEY = bytes.fromhex("404142434445464748494A4B4C4D4E4F")
FACTORY_KEYS = StaticKeys(FACTORY_KEY, FACTORY_KEY, FACTORY_KEY)
#: The SE's SCP11b key (KID 13, KVN 01), certified by its maker, that authenticates a
#: factory-fresh SE at first contact when the TSM is given trusted SE maker roots
SCP11B_KID, SCP11B_KVN = 0x13, 0x01
#: the SE's SCP11a key (GPCS Amendment F: the OCE authenticated too)
SCP11A_KID, SCP11A_KVN = 0x11, 0x01
#: The KVN of the diversified keyset the TSM rotates every SE to.
DIVERSIFIED_KVN = 0x31

KDD_LENGTH = 10
_ROLES = ("ENC", "MAC", "DEK")


def kbkdf_cmac(key: bytes, label: bytes, context: bytes, length: int) -> bytes:
    """SP 800-108 counter-mode KDF, PRF = AES-CMAC, 8-bit counter before the fixed input,
    32-bit L; fixed input = label || 00 || context (SP 800-108 5.1)."""
    kdf = KBKDFCMAC(
        algorithm=algorithms.AES,
        mode=Mode.CounterMode,
        length=length,
        rlen=1,
        llen=4,
        location=CounterLocation.BeforeFixed,
        label=label,
        context=context,
        fixed=None,
    )
    return kdf.derive(key)


def kbkdf_counter(prf: Callable[[bytes], bytes], label: bytes, context: bytes, length: int) -> bytes:
    """The same SP 800-108 counter-mode KDF as :func:`kbkdf_cmac` around a given PRF (an
    AES-CMAC computed elsewhere, e.g. in an HSM): block i = PRF(i[1] || label || 00 ||
    context || L[4]), i = 1, 2, ...; the output is the first ``length`` bytes."""
    if not 0 < length <= 255 * 16:
        raise MasterKeyError(f"KDF output of {length} bytes is out of range")
    fixed = label + b"\x00" + context + (8 * length).to_bytes(4, "big")
    out = b"".join(prf(bytes([i]) + fixed) for i in range(1, -(-length // 16) + 1))
    return out[:length]


def se_keyset(derive: Callable[[bytes, bytes, int], bytes], kdd: bytes, length: int) -> StaticKeys:
    """The SE's ENC, MAC and DEK keys: ``derive(label, context, length)`` with label
    ``"mcred-tsm/" + role`` and context the 10-byte KDD."""
    if len(kdd) != KDD_LENGTH:
        raise MasterKeyError(f"key diversification data is {len(kdd)} bytes, expected 10")
    return StaticKeys(*(derive(b"mcred-tsm/" + role.encode(), bytes(kdd), length) for role in _ROLES))


def diversify(master: bytes, kdd: bytes) -> StaticKeys:
    """The SE's static keyset for key diversification data ``kdd`` (10 bytes)."""
    if len(master) not in (16, 24, 32):
        raise MasterKeyError(f"master key is {len(master)} bytes; AES needs 16, 24 or 32")
    return se_keyset(lambda label, context, n: kbkdf_cmac(master, label, context, n), kdd, len(master))


KEY_ID_LABEL = b"mcred-tsm/key-id"


def key_check_value(cmac: Callable[[bytes], bytes]) -> str:
    """A master key's non-secret name: the first 8 bytes of ``CMAC(key, "mcred-tsm/key-id")``
    in hex, computed by whoever holds the key (``cryptography`` for a file key, the token
    for an HSM key), so the same key has the same name in either store."""
    return cmac(KEY_ID_LABEL)[:8].hex()


def _aes_cmac(key: bytes, data: bytes) -> bytes:
    c = CMAC(algorithms.AES(key))
    c.update(data)
    return c.finalize()


class MasterKey(Protocol):
    """What the TSM may ask of its master key (never the key itself)."""

    #: A stable, non-secret name of the key (recorded per SE: which master diversified it;
    #: at most 32 characters, the column's width): :func:`key_check_value`.
    key_id: str
    #: Other names the same key was recorded under (by earlier releases); may be empty.
    also_known_as: frozenset[str]

    def se_keys(self, kdd: bytes) -> StaticKeys:
        """The diversified static keyset of the SE with key diversification data ``kdd``."""
        ...

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        """Encrypt job secrets for storage (AES-GCM under a key derived for sealing)."""
        ...

    def unseal(self, sealed: bytes, aad: bytes) -> bytes:
        """Inverse of :meth:`seal`; raises :class:`SealError` on a wrong key or tampering."""
        ...


class InMemoryMasterKey:
    """A master key held in this process (tests, benchmarks, or a key loaded once)."""

    def __init__(self, key: bytes) -> None:
        if len(key) not in (16, 24, 32):
            raise MasterKeyError(f"master key is {len(key)} bytes; AES needs 16, 24 or 32")
        self._key = bytes(key)
        # A non-secret identifier: the key's check value, the one a token holding the same
        # key computes (tsm.hsm), so a key moved into an HSM keeps its name
        self.key_id = key_check_value(lambda data: _aes_cmac(self._key, data))
        #: The name earlier releases recorded for this key (a domain-separated SHA-256).
        self.also_known_as = frozenset({hashlib.sha256(KEY_ID_LABEL + self._key).hexdigest()[:16]})
        self._seal_key = kbkdf_cmac(self._key, b"mcred-tsm/SEAL", b"", 32)

    def __repr__(self) -> str:  # never show key bytes
        return f"{type(self).__name__}(key_id={self.key_id})"

    def se_keys(self, kdd: bytes) -> StaticKeys:
        return diversify(self._key, kdd)

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        nonce = secrets.token_bytes(12)
        return nonce + AESGCM(self._seal_key).encrypt(nonce, plaintext, aad)

    def unseal(self, sealed: bytes, aad: bytes) -> bytes:
        if len(sealed) < 12 + 16:
            raise SealError(f"sealed secrets of {len(sealed)} bytes are too short")
        try:
            return AESGCM(self._seal_key).decrypt(sealed[:12], sealed[12:], aad)
        except InvalidTag as exc:
            raise SealError("sealed job secrets do not open under this master key") from exc


class FileMasterKey(InMemoryMasterKey):
    """The master key in a file (hex, one line), created with mode 0600 on first use."""

    def __init__(self, path: Path) -> None:
        path = Path(path)
        try:
            key = load_key_file(path, 16)
        except ValueError as exc:
            raise MasterKeyError(f"master {exc}") from None
        super().__init__(key)
        self.path = path

    def describe(self) -> str:
        """Where the key is and its non-secret name (for ``mcred doctor`` and ``/readyz``)."""
        return f"{self.path}, AES-{8 * len(self._key)}, key_id {self.key_id}"


def create_key_file(path: Path, nbytes: int = 16) -> None:
    """Write a new random key (hex, one line, mode 0600) to a private temporary file, then
    link it into place: a concurrent first user either wins the link or finds the complete
    file, never an empty one. A missing directory is made 0700 (its owner's alone, whatever
    the umask: a directory others may write lets them put their own key in its place)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_bytes(nbytes).hex() + "\n")
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process created it first: use theirs
    finally:
        tmp.unlink(missing_ok=True)


def load_key_file(path: Path, create_bytes: int) -> bytes:
    """The key in a key file (hex, one line), made first (``create_bytes`` random bytes,
    mode 0600) when there is none. ``ValueError`` naming the file when it cannot be made or
    read, or is not hex; the caller checks the length its cipher wants."""
    path = Path(path)
    try:
        if not path.exists():
            create_key_file(path, create_bytes)
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"key file {path}: cannot be made or read ({exc.__class__.__name__}: {exc})") from None
    try:
        return bytes.fromhex(text.strip())
    except ValueError:
        raise ValueError(f"key file {path}: not hex (one line of hex digits expected)") from None


def master_key_path(data_home: Path) -> Path:
    """Where the installation's file master key lives: ``<data_home>/tsm/master.key``."""
    return Path(data_home) / "tsm" / "master.key"


def default_master_key(data_home: Path) -> FileMasterKey:
    """The installation's file master key (created if absent)."""
    return FileMasterKey(master_key_path(data_home))
