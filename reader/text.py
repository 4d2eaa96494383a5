"""Text a peer sent, made fit to show a person (no httpx or other import: the CLI uses it
at start-up)."""

from __future__ import annotations


def printable(text: str) -> str:
    """``text`` with every character that is not printable escaped (``\\x1b``, ``\\n``):
    what a peer sent, fit to show on a terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
