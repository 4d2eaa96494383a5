"""Errors of the ``protocols.gp`` package: one base class, precise subclasses.

Every decoder in this package raises only these on bad bytes; messages say what was wrong
and where (offset, field, expected value).
"""

from __future__ import annotations


class GpError(Exception):
    """Base class of every error raised by ``protocols.gp``."""


class ApduError(GpError):
    """A command or response APDU is malformed (ISO/IEC 7816-4 5.1, 5.2)."""


class TlvError(GpError):
    """A BER-TLV structure is malformed (ISO/IEC 7816-4 5.2.2, ISO/IEC 8825-1)."""


class DgiError(GpError):
    """A stream of DGI records is malformed (EMV CPS 1.1 / GPCS 2.3.1 11.11.3.1)."""


class KeyError_(GpError):  # noqa: N801 - not the builtin KeyError
    """A key, key block or key check value is invalid (GPCS 11.8, Amendment D 7.2)."""


class Scp03Error(GpError):
    """An SCP03 secure-channel failure (GlobalPlatform Card Spec Amendment D)."""


class Scp03StateError(Scp03Error):
    """The secure channel is not in a state where this operation is allowed."""


class Scp03ProtocolError(Scp03Error):
    """A handshake message (INITIALIZE UPDATE / EXTERNAL AUTHENTICATE) is malformed,
    or the peer answered with an error status word."""

    def __init__(self, message: str, sw: int | None = None) -> None:
        super().__init__(message)
        self.sw = sw


class Scp03AuthenticationError(Scp03Error):
    """A cryptogram did not verify (Amendment D 6.2.2.2, 6.2.2.3)."""


class Scp03MacError(Scp03Error):
    """A C-MAC or R-MAC did not verify (Amendment D 6.2.4, 6.2.5)."""


class Scp03PaddingError(Scp03Error):
    """Deciphered data does not end in valid ISO/IEC 9797-1 method 2 padding."""


class Scp03SecurityLevelError(Scp03Error):
    """A security level is not one of 00 01 03 11 13 33, or needs an option the card's
    ``i`` parameter does not offer (Amendment D 5.1, 7.1.2.1)."""


class Scp11Error(GpError):
    """An SCP11 failure (GlobalPlatform Card Specification v2.3 Amendment F)."""


class Scp11StateError(Scp11Error):
    """The SCP11 channel is not in a state where this operation is allowed."""


class Scp11ProtocolError(Scp11Error):
    """INTERNAL AUTHENTICATE or its answer is malformed, or the peer refused it; ``sw`` is
    the status word the card answers (card side) or answered (host side)."""

    def __init__(self, message: str, sw: int | None = None) -> None:
        super().__init__(message)
        self.sw = sw


class Scp11AuthenticationError(Scp11Error):
    """The receipt did not verify: the card does not hold the certified key."""


class Scp11CertificateError(Scp11Error):
    """The SD's certificate bundle is malformed, or does not chain to a trusted root."""
