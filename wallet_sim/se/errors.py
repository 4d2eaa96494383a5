"""Errors of the phone / secure element simulator (never raised for bad APDUs: those
are answered with status words, as a card does)."""

from __future__ import annotations


class SeError(Exception):
    """Base class of ``wallet_sim`` phone and SE errors."""


class PhoneNotFoundError(SeError):
    """No phone with this id exists under the data directory."""


class SeStateError(SeError):
    """The persisted SE image is unreadable, of an unknown version, or not of the shape the
    SE reads (the message names the field)."""


class PhoneStateError(SeError):
    """The phone's own record (``phone.cbor``: its id and model) is unreadable or not of its
    shape (the message names the file and what is wrong)."""
