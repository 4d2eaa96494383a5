"""Errors of the IACA package (ISO/IEC 18013-5:2021 Annex B certificate profiles)."""

from __future__ import annotations


class IacaError(ValueError):
    """Base of every error of :mod:`protocols.iaca`."""


class IacaProfileError(IacaError):
    """A builder was asked for a certificate the Annex B profile does not allow."""
