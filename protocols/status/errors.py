"""Errors of the status package (draft-ietf-oauth-status-list, ISO/IEC 18013-5 2nd ed. 12.3.6).

One base class, :class:`StatusListError`; every decoder and verifier in
:mod:`protocols.status` raises only its subclasses, with a message that says what was wrong
and where.
"""

from __future__ import annotations


class StatusListError(ValueError):
    """Base of every error of :mod:`protocols.status`."""


class StatusValueError(StatusListError):
    """A status value or bit width is not allowed (bits in 1, 2, 4, 8; value < 2**bits)."""


class StatusIndexError(StatusListError, IndexError):
    """An index lies outside the list."""


class StatusListDecodeError(StatusListError):
    """The bytes are not a well-formed Status List, Identifier List or token of one."""


class StatusListTooLargeError(StatusListDecodeError):
    """The compressed list inflates beyond the allowed size (decompression bomb guard)."""


class StatusListSignatureError(StatusListError):
    """The token's COSE_Sign1 signature does not verify with its signer certificate."""


class StatusListTrustError(StatusListError):
    """The signer certificate is missing, malformed or does not chain to the trust anchor."""


class StatusListClaimError(StatusListError):
    """A header or claim is wrong for the use: typ, sub (the URI), iat, exp or ttl."""


class StatusListFullError(StatusListError):
    """No index can be allocated in this list any more: start a new list."""
