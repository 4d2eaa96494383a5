"""Errors of the applets package.

Inside an applet every refusal is a :class:`StatusError` carrying the ISO/IEC 7816-4 status
word to answer; the applet's entry points turn it into ``SW1 SW2`` so that no bytes from the
outside can make them raise. :class:`AppletStateError` is raised by ``restore`` when a
persisted NVM image is not one an applet wrote.
"""

from __future__ import annotations


class AppletError(Exception):
    """Base class of every error raised by ``wallet_sim.applets``."""


class StatusError(AppletError):
    """A command is refused with status word ``sw``; the message says why."""

    def __init__(self, sw: int, message: str) -> None:
        super().__init__(f"{sw:04X}: {message}")
        self.sw = sw
        self.reason = message


class AppletStateError(AppletError):
    """A persisted applet state (NVM image) is malformed."""
