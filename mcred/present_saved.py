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


def age_over_asked(values: list[str]) -> tuple[int, ...]:
    """The NN of ``--age-over`` values (``21`` or ``age_over_21``, repeatable), in the order
    given, each once: what a verification without the request is told was asked. At most
    two (ISO/IEC 18013-5 7.2.5: a reader asks for no more). ValueError naming the value."""
    from protocols.mdoc import age_over

    out: list[int] = []
    for value in values:
        text = value.strip()
        nn = age_over.threshold(text) if text.startswith(age_over.PREFIX) else (
            int(text) if len(text) == 2 and text.isascii() and text.isdigit() else None)
        if nn is None:
            raise ValueError(f"--age-over {value[:40]!r}: NN (two digits) or age_over_NN")
        if nn not in out:
            out.append(nn)
    if age_over.too_many(map(age_over.identifier, out)):
        raise ValueError(f"--age-over: at most {age_over.MAX_REQUESTED} age_over_NN (ISO/IEC 18013-5 7.2.5)")
    return tuple(out)


def with_age_over(result: VerificationResult, asked: tuple[int, ...]) -> VerificationResult:
    """``result`` with what each disclosed document says of each age_over_NN ``asked``, in
    every namespace it discloses (ISO/IEC 18013-5 7.2.5, :func:`protocols.mdoc.age_over.read`:
    the element itself, the age_over_MM in its place, or nothing), as a reader that asked
    for them reports it (``ageOver``). Nothing asked: ``result`` as it is."""
    import dataclasses

    from protocols.mdoc import age_over

    if not asked:
        return result
    documents = tuple(dataclasses.replace(d, age_over=tuple(
        age_over.read(ns, nn, elements) for ns, elements in d.elements.items() for nn in asked)) for d in result.documents)
    return VerificationResult(result.checks, documents)
