"""Errors of the COSE package (RFC 9052)."""

from __future__ import annotations


class CoseError(ValueError):
    """Base of every COSE error: malformed structures, unsupported algorithms, bad keys."""


class CoseDecodeError(CoseError):
    """A COSE structure (COSE_Sign1, COSE_Mac0, COSE_Key) is malformed."""


class CoseKeyError(CoseError):
    """A key is malformed, of an unsupported type or curve, or does not fit the algorithm."""


class CoseSignatureError(CoseError):
    """A signature or MAC does not verify."""
