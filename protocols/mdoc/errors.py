"""Errors of the mdoc package (ISO/IEC 18013-5:2021 clauses 8 and 9)."""

from __future__ import annotations


class MdocError(ValueError):
    """Base of every mdoc error."""


class MdocDecodeError(MdocError):
    """Bytes or a decoded value are not the mdoc structure expected; the message says where."""


class MdocEncodeError(MdocError):
    """A value cannot be built into an mdoc structure."""


class SessionError(MdocError):
    """Session encryption (clause 9.1.1) failed: wrong key, replay, out-of-order or closed."""


class SessionDecryptError(SessionError):
    """A SessionData / SessionEstablishment ciphertext does not decrypt with the expected key and IV."""


class IssuingError(MdocError):
    """An mdoc cannot be issued from the given parameters."""
