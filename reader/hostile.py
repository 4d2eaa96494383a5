"""A hostile reader on purpose: faults the reader can be told to make in what it sends a
phone, so that a phone maker can check that a wallet refuses each one (``mcred reader nfc
--hostile``, :class:`reader.session.ReaderSession` ``hostile=``).

Two kinds. For some, ISO/IEC 18013-5 says what the phone answers, and the reader judges
the answer itself. A session message it cannot decrypt gets SessionData status 10 (§9.1.1.4).
A DeviceRequest that is not CBOR gets a DeviceResponse with status 11, and one that is CBOR
but no DeviceRequest gets status 12 (§8.3.2.1.2.3). For the others, readerAuth that does not
verify, the phone must not show the reader as verified. Only the phone's screen tells
(our own wallet's events do, in the tests).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec

from protocols import cbor
from protocols.cose import Sign1
from protocols.mdoc import SessionEncryption, SessionTranscript

SESSION_STATUS_DECRYPTION = 10
STATUS_CBOR_DECODING = 11
STATUS_CBOR_VALIDATION = 12


class HostileError(ValueError):
    """No such hostile fault, or one that needs what the reader lacks; the message says which."""


@dataclass(frozen=True)
class Hostile:
    name: str
    does: str
    """what the reader gets wrong"""
    phone_must: str
    """what the phone must do"""
    session_status: int | None = None
    """the SessionData status the phone must answer with (no data)"""
    response_status: int | None = None
    """the DeviceResponse status the phone must answer with"""
    needs_reader_key: bool = False


HOSTILE: dict[str, Hostile] = {h.name: h for h in (
    Hostile("wrong-session-key", "encrypts its DeviceRequest with a key not agreed in this session",
            "answer SessionData status 10 (session encryption error)", session_status=SESSION_STATUS_DECRYPTION),
    Hostile("garbage-request", "sends a DeviceRequest that is not CBOR",
            "answer a DeviceResponse with status 11 (CBOR decoding error)", response_status=STATUS_CBOR_DECODING),
    Hostile("invalid-request", "sends CBOR that is no DeviceRequest (no docRequests)",
            "answer a DeviceResponse with status 12 (CBOR validation error)", response_status=STATUS_CBOR_VALIDATION),
    Hostile("reader-auth-signature", "flips a bit of its readerAuth signature",
            "not show the reader as verified", needs_reader_key=True),
    Hostile("reader-auth-transcript", "signs readerAuth over another session's transcript",
            "not show the reader as verified", needs_reader_key=True),
)}


def hostile(name: str | None) -> Hostile | None:
    if name is None:
        return None
    try:
        return HOSTILE[name]
    except KeyError:
        raise HostileError(f"--hostile {name!r}: one of {', '.join(HOSTILE)}") from None


def request_bytes(h: Hostile, genuine: bytes) -> bytes:
    """The DeviceRequest bytes a request-level fault sends instead of ``genuine``."""
    if h.name == "garbage-request":
        return b"\xff\x00 not CBOR " + genuine[:8]
    if h.name == "invalid-request":
        return cbor.dumps({"version": "1.0"})
    return genuine


def stranger_encryption(transcript: SessionTranscript) -> SessionEncryption:
    """Session keys no phone agreed to: from a key pair of nobody's (wrong-session-key)."""
    a, b = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    return SessionEncryption.for_reader(a, b.public_key(), transcript)


def flip_signature(auth: Sign1) -> Sign1:
    """``auth`` with one bit of its signature flipped (reader-auth-signature)."""
    sig = bytearray(auth.signature)
    sig[len(sig) // 2] ^= 0x01
    return dataclasses.replace(auth, signature=bytes(sig))


def other_transcript() -> bytes:
    """A SessionTranscript of some other session (reader-auth-transcript)."""
    return cbor.dumps([None, None, ["another session", bytes(16)]])
