"""SessionTranscript and the DeviceAuthentication / ReaderAuthentication byte strings.

ISO/IEC 18013-5:2021 §9.1.5.1 (SessionTranscript), §9.1.3.4 (DeviceAuthentication),
§9.1.4.4 (ReaderAuthentication). The transcript is kept as the exact array bytes
received, and the authentication structures are assembled around those bytes, so the
transcript is never re-encoded on the way into a signature or a MAC.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from protocols import cbor
from protocols.cose import CoseKey
from protocols.mdoc import _parse as p
from protocols.mdoc.errors import MdocDecodeError, MdocEncodeError


@dataclass(frozen=True)
class SessionTranscript:
    """``SessionTranscript = [DeviceEngagementBytes, EReaderKeyBytes, Handover]``."""

    raw: bytes
    """Encoded array (without the tag 24 wrapper)."""
    device_engagement_bytes: bytes | None
    e_reader_key_bytes: bytes | None
    handover: Any = field(hash=False, compare=False)

    @property
    def tagged(self) -> bytes:
        """``SessionTranscriptBytes = #6.24(bstr .cbor SessionTranscript)``: the HKDF salt input."""
        return cbor.dumps(cbor.CBORTag(24, self.raw))

    @classmethod
    def build(
        cls,
        device_engagement_bytes: bytes | None,
        e_reader_key: CoseKey | bytes | None,
        handover: Any = None,
    ) -> SessionTranscript:
        """From the encoded DeviceEngagement, the reader's ephemeral key and the Handover
        (``null`` for QR handover, §9.1.5.1)."""
        erk = e_reader_key.encode() if isinstance(e_reader_key, CoseKey) else e_reader_key
        array = [
            cbor.CBORTag(24, device_engagement_bytes) if device_engagement_bytes is not None else None,
            cbor.CBORTag(24, erk) if erk is not None else None,
            handover,
        ]
        return cls(p.encode(array), device_engagement_bytes, erk, handover)

    @classmethod
    def decode(cls, data: bytes) -> SessionTranscript:
        """From the array bytes or from SessionTranscriptBytes (tag 24 around them)."""
        value = p.load(data, "SessionTranscript")
        raw = bytes(data)
        if isinstance(value, cbor.CBORTag):
            raw, value = p.embedded(value, "SessionTranscriptBytes")
        arr = p.as_array(value, "SessionTranscript")
        if len(arr) != 3:
            raise MdocDecodeError(f"SessionTranscript: expected 3 elements, got {len(arr)}")
        de = None if arr[0] is None else p.embedded_raw(arr[0], "SessionTranscript[0] DeviceEngagementBytes")
        erk = None if arr[1] is None else p.embedded_raw(arr[1], "SessionTranscript[1] EReaderKeyBytes")
        return p.make(cls, raw=raw, device_engagement_bytes=de, e_reader_key_bytes=erk, handover=arr[2])

    @classmethod
    def coerce(cls, value: SessionTranscript | bytes) -> SessionTranscript:
        return value if isinstance(value, SessionTranscript) else cls.decode(value)


def hashed_handover(identifier: str, info: Sequence[Any]) -> SessionTranscript:
    """``[null, null, [identifier, SHA-256(CBOR(info))]]``: the transcript of the online
    presentations, its handover the hash of what binds it (origin, nonce, key, ...)."""
    return SessionTranscript.build(None, None, [identifier, hashlib.sha256(p.encode(list(info))).digest()])


def is_hashed_handover(transcript: SessionTranscript, identifier: str) -> bool:
    """Whether ``transcript`` is ``[null, null, [identifier, 32-byte hash]]``: the shape of the
    online presentations' transcripts (ISO/IEC TS 18013-7 Annex C ``"dcapi"``, OpenID4VP's
    ``"OpenID4VPDCAPIHandover"`` and ``"OpenID4VPHandover"``), which have no engagement and no
    reader key."""
    h = transcript.handover
    return (transcript.device_engagement_bytes is None and transcript.e_reader_key_bytes is None
            and isinstance(h, list | tuple) and len(h) == 2 and h[0] == identifier
            and isinstance(h[1], bytes) and len(h[1]) == 32)


def _embed_raw_array(parts: Sequence[bytes]) -> bytes:
    return cbor.tag24_bytes(cbor.array_head(len(parts)) + b"".join(parts))


def device_authentication_bytes(
    session_transcript: SessionTranscript | bytes, doc_type: str, device_name_spaces_bytes: bytes
) -> bytes:
    """``DeviceAuthenticationBytes = #6.24(bstr .cbor ["DeviceAuthentication",
    SessionTranscript, DocType, DeviceNameSpacesBytes])`` (§9.1.3.4).

    ``device_name_spaces_bytes`` is the encoded DeviceNameSpaces (inside its tag 24).
    """
    st = SessionTranscript.coerce(session_transcript)
    device_name_spaces_bytes = _bstr(device_name_spaces_bytes, "DeviceNameSpacesBytes")
    if type(doc_type) is str:
        # the same bytes as below, head by head (the hot path of every device authentication)
        return cbor.tag24_bytes(b"".join((
            _DEVICE_AUTH_HEAD, st.raw, cbor.tstr(doc_type), cbor.tag24_bytes(device_name_spaces_bytes),
        )))
    return _embed_raw_array(
        [
            cbor.dumps("DeviceAuthentication"),
            st.raw,
            cbor.dumps(doc_type),
            cbor.tag24_bytes(device_name_spaces_bytes),
        ]
    )


_DEVICE_AUTH_HEAD = b"\x84" + cbor.dumps("DeviceAuthentication")


def _bstr(value: bytes | bytearray | memoryview, what: str) -> bytes:
    """``value`` as bytes: a bytearray or memoryview copied (cbor2 would encode a memoryview
    as an array of integers, not a bstr), anything else refused by name."""
    if type(value) is bytes:
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise MdocEncodeError(f"{what} must be bytes, not {type(value).__name__}")


def reader_authentication_bytes(session_transcript: SessionTranscript | bytes, items_request_bytes: bytes) -> bytes:
    """``ReaderAuthenticationBytes = #6.24(bstr .cbor ["ReaderAuthentication",
    SessionTranscript, ItemsRequestBytes])`` (§9.1.4.4); ``items_request_bytes`` is the
    encoded ItemsRequest (inside its tag 24)."""
    st = SessionTranscript.coerce(session_transcript)
    return _embed_raw_array(
        [cbor.dumps("ReaderAuthentication"), st.raw,
         cbor.tag24_bytes(_bstr(items_request_bytes, "ItemsRequestBytes"))]
    )


def reader_authentication_all_bytes(
    session_transcript: SessionTranscript | bytes,
    items_request_bytes: Sequence[bytes],
    device_request_info_bytes: bytes | None = None,
) -> bytes:
    """``ReaderAuthenticationAllBytes = #6.24(bstr .cbor ["ReaderAuthenticationAll",
    SessionTranscript, [+ ItemsRequestBytes], DeviceRequestInfoBytes / null])``, what a
    readerAuthAll signature covers (ISO/IEC 18013-5 second edition): every DocRequest's
    ItemsRequest bytes in order, and the DeviceRequestInfo's (each inside its tag 24)."""
    st = SessionTranscript.coerce(session_transcript)
    items = cbor.array_head(len(items_request_bytes)) + b"".join(
        cbor.tag24_bytes(_bstr(raw, "ItemsRequestBytes")) for raw in items_request_bytes)
    info = b"\xf6" if device_request_info_bytes is None else cbor.tag24_bytes(  # null
        _bstr(device_request_info_bytes, "DeviceRequestInfoBytes"))
    return _embed_raw_array([cbor.dumps("ReaderAuthenticationAll"), st.raw, items, info])
