"""Session encryption, SessionEstablishment and SessionData (ISO/IEC 18013-5:2021 §9.1.1).

Sans-I/O: :class:`SessionEncryption` takes plaintext or ciphertext bytes and returns bytes,
keeping the per-direction message counters. Keys: ``SKReader`` / ``SKDevice`` =
HKDF-SHA256(ECDH(EReaderKey, EDeviceKey), salt = SHA-256(SessionTranscriptBytes), info,
32); AES-256-GCM with IV = 8-byte identifier (reader 0..0, mdoc 0..01) || 4-byte counter
starting at 1 (§9.1.1.5). EMacKey for deviceMac is the same HKDF with info "EMacKey"
over ECDH(SDeviceKey, EReaderKey) (§9.1.3.5).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from protocols import cbor
from protocols.cose import CoseKey, CoseKeyError
from protocols.mdoc import _parse as p
from protocols.mdoc.errors import MdocDecodeError, SessionDecryptError, SessionError
from protocols.mdoc.transcript import SessionTranscript

READER_IDENTIFIER = bytes(8)
MDOC_IDENTIFIER = bytes(7) + b"\x01"
# SessionData.status (§9.1.1.4)
SESSION_STATUS_ENCRYPTION_ERROR = 10
SESSION_STATUS_DECODING_ERROR = 11
SESSION_STATUS_TERMINATION = 20

Role = Literal["reader", "mdoc"]


def _hkdf(secret: bytes, transcript: SessionTranscript | bytes, info: bytes) -> bytes:
    st = SessionTranscript.coerce(transcript)
    salt = hashlib.sha256(st.tagged).digest()
    return HKDF(hashes.SHA256(), 32, salt, info).derive(secret)


def ecdh(private_key: ec.EllipticCurvePrivateKey, public_key: ec.EllipticCurvePublicKey | CoseKey) -> bytes:
    """``Z_AB``: the ECDH x-coordinate (§9.1.1.5)."""
    if isinstance(public_key, CoseKey):
        try:
            public_key = public_key.public_key()
        except CoseKeyError as exc:
            raise SessionError(f"ECDH peer key: {exc}") from exc
    if public_key.curve.name != private_key.curve.name:
        raise SessionError(f"ECDH: curves differ ({private_key.curve.name} vs {public_key.curve.name})")
    return private_key.exchange(ec.ECDH(), public_key)


def derive_session_keys(shared_secret: bytes, session_transcript: SessionTranscript | bytes) -> tuple[bytes, bytes]:
    """``(SKReader, SKDevice)`` from Z_AB and the SessionTranscript (bytes with or without tag 24)."""
    return (
        _hkdf(shared_secret, session_transcript, b"SKReader"),
        _hkdf(shared_secret, session_transcript, b"SKDevice"),
    )


def derive_emac_key(shared_secret: bytes, session_transcript_bytes: SessionTranscript | bytes) -> bytes:
    """``EMacKey`` = HKDF-SHA256(ECDH(SDeviceKey, EReaderKey), SHA-256(SessionTranscriptBytes), "EMacKey")."""
    return _hkdf(shared_secret, session_transcript_bytes, b"EMacKey")


class SessionEncryption:
    """One side of an mdoc session: encrypts what this role sends, decrypts what it gets.

    Counters start at 1 in each direction and move on every message; a message that does not
    decrypt under the next expected IV (wrong key, replay, reordering) raises
    :class:`SessionDecryptError` and leaves the counters where they were.
    """

    def __init__(self, role: Role, sk_reader: bytes, sk_device: bytes) -> None:
        if role not in ("reader", "mdoc"):
            raise SessionError(f"role must be 'reader' or 'mdoc', got {role!r}")
        if len(sk_reader) != 32 or len(sk_device) != 32:
            raise SessionError("session keys must be 32 bytes (AES-256)")
        self.role = role
        send_key, recv_key = (sk_reader, sk_device) if role == "reader" else (sk_device, sk_reader)
        self._send = AESGCM(send_key)
        self._recv = AESGCM(recv_key)
        self._send_id = READER_IDENTIFIER if role == "reader" else MDOC_IDENTIFIER
        self._recv_id = MDOC_IDENTIFIER if role == "reader" else READER_IDENTIFIER
        self.send_counter = 1
        self.receive_counter = 1

    @classmethod
    def for_reader(
        cls,
        e_reader_private_key: ec.EllipticCurvePrivateKey,
        e_device_key: ec.EllipticCurvePublicKey | CoseKey,
        session_transcript: SessionTranscript | bytes,
    ) -> SessionEncryption:
        return cls("reader", *derive_session_keys(ecdh(e_reader_private_key, e_device_key), session_transcript))

    @classmethod
    def for_mdoc(
        cls,
        e_device_private_key: ec.EllipticCurvePrivateKey,
        e_reader_key: ec.EllipticCurvePublicKey | CoseKey,
        session_transcript: SessionTranscript | bytes,
    ) -> SessionEncryption:
        return cls("mdoc", *derive_session_keys(ecdh(e_device_private_key, e_reader_key), session_transcript))

    @staticmethod
    def iv(identifier: bytes, counter: int) -> bytes:
        return identifier + counter.to_bytes(4, "big")

    def encrypt(self, plaintext: bytes) -> bytes:
        if self.send_counter >= 2**32:
            raise SessionError("message counter exhausted")
        out = self._send.encrypt(self.iv(self._send_id, self.send_counter), plaintext, None)
        self.send_counter += 1
        return out

    def decrypt(self, ciphertext: bytes) -> bytes:
        if not isinstance(ciphertext, bytes) or len(ciphertext) < 16:
            raise SessionDecryptError("ciphertext shorter than the GCM tag")
        try:
            out = self._recv.decrypt(self.iv(self._recv_id, self.receive_counter), ciphertext, None)
        except InvalidTag:
            raise SessionDecryptError(
                f"{self.role}: message {self.receive_counter} does not decrypt (wrong key, replayed or out of order)"
            ) from None
        self.receive_counter += 1
        return out


@dataclass(frozen=True)
class SessionEstablishment:
    """``{"eReaderKey": EReaderKeyBytes, "data": bstr}`` (§9.1.1.4)."""

    e_reader_key: CoseKey
    e_reader_key_bytes: bytes
    data: bytes

    @classmethod
    def build(cls, e_reader_key: CoseKey, data: bytes) -> SessionEstablishment:
        return cls(e_reader_key, e_reader_key.encode(), data)

    def encode(self) -> bytes:
        return p.encode({"eReaderKey": cbor.CBORTag(24, self.e_reader_key_bytes), "data": self.data})

    @classmethod
    def decode(cls, data: bytes) -> SessionEstablishment:
        m = p.as_map(p.load(data, "SessionEstablishment"), "SessionEstablishment")
        raw, value = p.embedded(m.get("eReaderKey"), "SessionEstablishment.eReaderKey")
        try:
            key = CoseKey.from_map(value)
        except CoseKeyError as exc:
            raise MdocDecodeError(f"SessionEstablishment.eReaderKey: {exc}") from exc
        return cls(key, raw, p.field(m, "data", bytes, "SessionEstablishment"))


@dataclass(frozen=True)
class SessionData:
    """``{? "data": bstr, ? "status": uint}`` (§9.1.1.4); at least one present."""

    data: bytes | None = None
    status: int | None = None

    def __post_init__(self) -> None:
        if self.data is None and self.status is None:
            raise MdocDecodeError("SessionData: needs data or status")

    def encode(self) -> bytes:
        m: dict[str, Any] = {}
        if self.data is not None:
            m["data"] = self.data
        if self.status is not None:
            m["status"] = self.status
        return p.encode(m)

    @classmethod
    def decode(cls, data: bytes) -> SessionData:
        m = p.as_map(p.load(data, "SessionData"), "SessionData")
        extra = set(m) - {"data", "status"}
        if extra:
            raise MdocDecodeError(f"SessionData: unexpected keys {sorted(map(repr, extra))}")
        status = p.field(m, "status", int, "SessionData", optional=True)
        if status is not None and status < 0:
            raise MdocDecodeError("SessionData.status: must be unsigned")
        return cls(p.field(m, "data", bytes, "SessionData", optional=True), status)
