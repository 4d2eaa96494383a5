"""Errors of the reader package: one base, precise subclasses."""

from __future__ import annotations


class ReaderError(ValueError):
    """Base of every reader error."""


class ReaderSessionError(ReaderError):
    """A session cannot start or go on: bad engagement, wrong state; the message says which."""


class RequestSpecError(ReaderError):
    """A requested item list cannot be read (``NS:ID`` expected)."""
