"""Saved presentations (``mcred present --save``, ``mcred reader serve --save-dir``): read
one back (:func:`read_saved`, what ``mcred mdoc verify`` takes) and verify it with a
reader pipeline (:func:`verify_saved`, ``mcred verify``). CBOR and the mdoc checks only.
Public names are also importable from :mod:`mcred.present`.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import serialization

from protocols import cbor
from protocols.mdoc import Check, SessionTranscript, VerificationResult

if TYPE_CHECKING:
    from reader.pipeline import ReaderPipeline


def verify_saved(data: bytes, pipeline: ReaderPipeline, *, now: dt.datetime | None = None) -> VerificationResult:
    """Verify a saved transcript (see :meth:`Presentation.saved`) with the reader pipeline;
    or an IssuerSigned on its own (CBOR, or the base64url text OpenID4VCI carries), as
    issued: every check but device authentication, its status included."""
    from protocols.cbor import from_text_or_raw
    from protocols.mdoc import is_issuer_signed

    issued = from_text_or_raw(data)
    if is_issuer_signed(issued):
        return pipeline.verify_issuer_signed(issued, now=now)
    try:
        saved = read_saved(data)
        if saved is None:
            raise ValueError("not a saved presentation (a map of deviceResponse and sessionTranscript)")
        response, st, reader_key = saved
    except Exception as exc:  # noqa: BLE001 - any unreadable file is one failed check
        return VerificationResult((Check("saved_transcript", False, f"unreadable: {type(exc).__name__}: {exc}",
                                         code="malformed"),))
    return pipeline.verify(response, session_transcript=st, reader_private_key=reader_key, now=now)


def read_saved(data: bytes) -> tuple[bytes, SessionTranscript, Any] | None:
    """A saved presentation (:meth:`Presentation.saved`): its DeviceResponse, SessionTranscript
    and the reader's ephemeral private key (None when it kept none); None for bytes that are
    no such map. Its parts that do not decode raise (``MdocError``, ``ValueError``)."""
    try:
        m = cbor.loads(data)
    except cbor.CborError:
        return None
    if not isinstance(m, dict) or not isinstance(m.get("deviceResponse"), bytes) or "sessionTranscript" not in m:
        return None
    key = m.get("eReaderPrivateKey")
    return (m["deviceResponse"], SessionTranscript.decode(m["sessionTranscript"]),
            serialization.load_der_private_key(key, None) if key else None)
