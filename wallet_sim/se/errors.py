"""Errors of the phone / secure element simulator (never raised for bad APDUs: those
are answered with status words, as a card does)."""

from __future__ import annotations


class SeError(Exception):
    """Base class of ``wallet_sim`` phone and SE errors."""


class PhoneNotFoundError(SeError):
    """No phone with this id exists under the data directory."""


class SeStateError(SeError):
    """The persisted SE image is unreadable or of an unknown version."""
