"""Errors of the card-substitute doctype package."""

from __future__ import annotations


class CardSubError(ValueError):
    """Base of every error of :mod:`protocols.cardsub`."""


class HolderError(CardSubError):
    """A holder record is missing a field, has an unknown (misspelt) one, or an ill-typed
    value. ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"holder field {field!r}: {message}")
        self.field = field


class ElementError(CardSubError):
    """A data element cannot be built (e.g. a document number shaped like a My Number)."""
