"""Online presentation over the W3C Digital Credentials API: ISO/IEC TS 18013-7 Annex C
(protocol ``org-iso-mdoc``), the way a web page asks a phone's wallet for an mdoc.

Sans-I/O, bytes and JSON values in and out. The page's server (the reader) makes an
:class:`EncryptionInfo` (a fresh nonce and its HPKE recipient key) and a DeviceRequest,
and hands both, base64url without padding, to the browser
(:meth:`DcApiRequest.to_json`). The browser adds the page's origin, which it vouches for,
and the wallet answers with an :class:`EncryptedResponse`: the DeviceResponse sealed with
HPKE to the reader's key (:func:`seal`). Both sides bind everything to one
SessionTranscript (:func:`session_transcript`)::

    SessionTranscript = [null, null, ["dcapi", SHA-256(CBOR([Base64EncryptionInfo, origin]))]]

Its array bytes are the HPKE ``info``, and the transcript of the device authentication
and of any reader authentication. A response relayed through another origin, or made for
another request, therefore neither decrypts nor verifies.

HPKE (RFC 9180) in base mode, DHKEM(P-256, HKDF-SHA256), HKDF-SHA256, AES-128-GCM, empty
aad, from ``cryptography``. The transcript construction is checked byte for byte against
a request the multipaz online verifier signed (tests/test_mdoc_dcapi.py).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite

from protocols.cose import CoseKey, CoseKeyError
from protocols.mdoc import _parse as p
from protocols.mdoc.errors import MdocDecodeError, MdocError
from protocols.mdoc.transcript import SessionTranscript, hashed_handover, is_hashed_handover

PROTOCOL = "org-iso-mdoc"
"""The Digital Credentials API protocol identifier of Annex C."""
LEGACY_PROTOCOLS = ("org.iso.mdoc",)
"""Earlier spellings a browser or a page may still send; accepted on input."""
DCAPI = "dcapi"
NONCE_MIN = 16
"""EncryptionParameters.nonce: at least 16 bytes of randomness."""
HPKE_SUITE = Suite(KEM.P256, KDF.HKDF_SHA256, AEAD.AES_128_GCM)
ENC_LENGTH = 65
"""The encapsulated key of DHKEM(P-256): an uncompressed point."""


class DcApiError(MdocError):
    """An Annex C request or response is not what the annex defines; the message says where."""


class DcApiDecryptError(DcApiError):
    """An EncryptedResponse does not open with this reader's key and this SessionTranscript:
    made for another request, another origin, or altered on the way."""


b64url = p.b64url
"""base64url without padding, as Annex C carries every CBOR value in JSON."""


def unb64url(text: Any, where: str) -> bytes:
    """The bytes of a base64url string (padding tolerated, nothing else), or :class:`DcApiError`."""
    return p.unb64url(text, where, DcApiError)


@dataclass(frozen=True)
class EncryptionInfo:
    """``EncryptionInfo = ["dcapi", {"nonce": bstr, "recipientPublicKey": COSE_Key}]``.

    ``b64`` is the base64url text exactly as the request carried it: the SessionTranscript
    hashes that string, so it is kept, never made again from the decoded value."""

    nonce: bytes
    recipient_key: CoseKey
    b64: str

    @classmethod
    def build(cls, recipient_public_key: ec.EllipticCurvePublicKey, nonce: bytes | None = None) -> EncryptionInfo:
        nonce = secrets.token_bytes(NONCE_MIN) if nonce is None else bytes(nonce)
        if len(nonce) < NONCE_MIN:
            raise DcApiError(f"EncryptionInfo nonce: at least {NONCE_MIN} bytes, got {len(nonce)}")
        try:
            key = CoseKey.from_public_key(recipient_public_key)
        except CoseKeyError as exc:
            raise DcApiError(f"EncryptionInfo recipientPublicKey: {exc}") from None
        if not isinstance(recipient_public_key.curve, ec.SECP256R1):
            raise DcApiError("EncryptionInfo recipientPublicKey: DHKEM(P-256) needs a P-256 key, "
                             f"got {recipient_public_key.curve.name}")
        raw = p.encode([DCAPI, {"nonce": nonce, "recipientPublicKey": key.to_map()}])
        return cls(nonce, key, b64url(raw))

    @classmethod
    def from_b64(cls, text: Any) -> EncryptionInfo:
        raw = unb64url(text, "encryptionInfo")
        try:
            value = p.as_array(p.load(raw, "EncryptionInfo"), "EncryptionInfo")
            if len(value) != 2 or value[0] != DCAPI:
                raise DcApiError('EncryptionInfo: expected ["dcapi", EncryptionParameters], got '
                                 f"{len(value)} element(s)" + (f" starting {value[0]!r:.40}" if value else ""))
            params = p.as_map(value[1], "EncryptionParameters")
            nonce = p.field(params, "nonce", bytes, "EncryptionParameters")
            key = CoseKey.from_map(p.field(params, "recipientPublicKey", dict, "EncryptionParameters"))
        except CoseKeyError as exc:
            raise DcApiError(f"EncryptionParameters.recipientPublicKey: {exc}") from None
        except MdocDecodeError as exc:
            raise DcApiError(str(exc)) from None
        if len(nonce) < NONCE_MIN:
            raise DcApiError(f"EncryptionParameters.nonce: at least {NONCE_MIN} bytes, got {len(nonce)}")
        if not isinstance(key.public_key().curve, ec.SECP256R1):
            raise DcApiError("EncryptionParameters.recipientPublicKey: DHKEM(P-256) needs a P-256 key")
        return cls(nonce, key, text)


def session_transcript(encryption_info: EncryptionInfo | str, origin: str) -> SessionTranscript:
    """``[null, null, ["dcapi", SHA-256(CBOR([Base64EncryptionInfo, origin]))]]``: the origin is
    the web origin the browser reports (``https://rp.example``, no path, no trailing slash)."""
    text = encryption_info.b64 if isinstance(encryption_info, EncryptionInfo) else encryption_info
    if not isinstance(text, str) or not isinstance(origin, str):
        raise DcApiError("SessionTranscript: the encryptionInfo text and the origin are strings")
    if not origin:
        raise DcApiError("SessionTranscript: empty origin")
    return hashed_handover(DCAPI, [text, origin])


def is_dcapi_transcript(transcript: SessionTranscript) -> bool:
    """Whether ``transcript`` is an Annex C one (no engagement, no reader key, a dcapi handover)."""
    return is_hashed_handover(transcript, DCAPI)


@dataclass(frozen=True)
class EncryptedResponse:
    """``EncryptedResponse = ["dcapi", {"enc": bstr, "cipherText": bstr}]``."""

    enc: bytes
    cipher_text: bytes

    def encode(self) -> bytes:
        return p.encode([DCAPI, {"enc": self.enc, "cipherText": self.cipher_text}])

    @classmethod
    def decode(cls, data: bytes) -> EncryptedResponse:
        try:
            value = p.as_array(p.load(data, "EncryptedResponse"), "EncryptedResponse")
            if len(value) != 2 or value[0] != DCAPI:
                raise DcApiError('EncryptedResponse: expected ["dcapi", EncryptedResponseData]')
            m = p.as_map(value[1], "EncryptedResponseData")
            enc = p.field(m, "enc", bytes, "EncryptedResponseData")
            ct = p.field(m, "cipherText", bytes, "EncryptedResponseData")
        except MdocDecodeError as exc:
            raise DcApiError(str(exc)) from None
        if len(enc) != ENC_LENGTH or enc[0] != 0x04:
            raise DcApiError(f"EncryptedResponseData.enc: DHKEM(P-256) gives a {ENC_LENGTH}-byte "
                             f"uncompressed point, got {len(enc)} byte(s)")
        if len(ct) < 16:
            raise DcApiError(f"EncryptedResponseData.cipherText: shorter than the AES-GCM tag ({len(ct)} bytes)")
        return cls(bytes(enc), bytes(ct))


def seal(device_response: bytes, encryption_info: EncryptionInfo, transcript: SessionTranscript) -> EncryptedResponse:
    """The wallet's side: HPKE-seal the DeviceResponse to the reader's key, ``info`` the
    SessionTranscript array bytes."""
    sealed = HPKE_SUITE.encrypt(bytes(device_response), encryption_info.recipient_key.public_key(),
                                info=transcript.raw)
    return EncryptedResponse(sealed[:ENC_LENGTH], sealed[ENC_LENGTH:])


def open_response(response: EncryptedResponse, private_key: ec.EllipticCurvePrivateKey,
                  transcript: SessionTranscript) -> bytes:
    """The reader's side: the DeviceResponse bytes, or :class:`DcApiDecryptError`."""
    try:
        return HPKE_SUITE.decrypt(response.enc + response.cipher_text, private_key, info=transcript.raw)
    except Exception as exc:  # noqa: BLE001 - InvalidTag, or a point off the curve (ValueError)
        raise DcApiDecryptError(
            "HPKE: the response does not open with this request's key and SessionTranscript "
            f"(another request or origin, or altered): {type(exc).__name__}") from None


@dataclass(frozen=True)
class DcApiRequest:
    """What the page passes to ``navigator.credentials.get`` for protocol ``org-iso-mdoc``:
    ``{"protocol", "data": {"deviceRequest", "encryptionInfo"}}`` (both base64url)."""

    device_request: bytes
    encryption_info: EncryptionInfo

    def to_json(self) -> dict:
        return {"protocol": PROTOCOL, "data": {"deviceRequest": b64url(self.device_request),
                                               "encryptionInfo": self.encryption_info.b64}}

    @classmethod
    def parse(cls, value: Any) -> DcApiRequest:
        """From the request object (or its ``data`` member alone)."""
        if not isinstance(value, Mapping):
            raise DcApiError(f"request: expected a JSON object, got {type(value).__name__}")
        data = value
        if "protocol" in value or "data" in value:
            protocol = value.get("protocol")
            if protocol != PROTOCOL and protocol not in LEGACY_PROTOCOLS:
                raise DcApiError(f"request.protocol: expected {PROTOCOL!r}, got {protocol!r}")
            data = value.get("data")
            if not isinstance(data, Mapping):
                raise DcApiError(f"request.data: expected a JSON object, got {type(data).__name__}")
        for key in ("deviceRequest", "encryptionInfo"):
            if key not in data:
                raise DcApiError(f"request.data: missing {key!r}")
        return cls(unb64url(data["deviceRequest"], "deviceRequest"),
                   EncryptionInfo.from_b64(data["encryptionInfo"]))


def response_json(response: EncryptedResponse) -> dict:
    """The credential's ``data`` as the page receives it: ``{"response": base64url}``."""
    return {"protocol": PROTOCOL, "data": {"response": b64url(response.encode())}}


def parse_response_json(value: Any) -> EncryptedResponse:
    """From ``{"protocol", "data": {"response"}}`` or ``{"response"}``."""
    if not isinstance(value, Mapping):
        raise DcApiError(f"response: expected a JSON object, got {type(value).__name__}")
    data = value
    if "data" in value:
        protocol = value.get("protocol", PROTOCOL)
        if protocol != PROTOCOL and protocol not in LEGACY_PROTOCOLS:
            raise DcApiError(f"response.protocol: expected {PROTOCOL!r}, got {protocol!r}")
        data = value["data"]
        if not isinstance(data, Mapping):
            raise DcApiError(f"response.data: expected a JSON object, got {type(data).__name__}")
    if "response" not in data:
        raise DcApiError("response: missing 'response'")
    return EncryptedResponse.decode(unb64url(data["response"], "response"))


__all__ = [
    "DCAPI",
    "ENC_LENGTH",
    "HPKE_SUITE",
    "PROTOCOL",
    "DcApiDecryptError",
    "DcApiError",
    "DcApiRequest",
    "EncryptedResponse",
    "EncryptionInfo",
    "b64url",
    "is_dcapi_transcript",
    "open_response",
    "parse_response_json",
    "response_json",
    "seal",
    "session_transcript",
    "unb64url",
]


def origin_of(url: str) -> str:
    """The web origin of ``url`` as a browser serializes it: lower-case scheme and host, the
    port only when it is not the scheme's default, no path. :class:`DcApiError` for what is
    not an http(s) URL with a host."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except (ValueError, AttributeError, TypeError) as exc:
        raise DcApiError(f"{str(url)[:80]!r}: not a URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not host:
        raise DcApiError(f"{url[:80]!r}: an http or https URL with a host has an origin")
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    default = {"http": 80, "https": 443}[scheme]
    return f"{scheme}://{host}" + (f":{port}" if port is not None and port != default else "")
