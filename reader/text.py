"""Text a peer sent, made fit to show a person (no httpx or other import: the CLI uses it
at start-up)."""

from __future__ import annotations

import unicodedata


def _shown(c: str) -> bool:
    # a space separator (U+3000 between a Japanese family and given name, U+00A0) is text;
    # controls, format characters and line or paragraph separators are not
    return c.isprintable() or unicodedata.category(c) == "Zs"


def printable(text: str) -> str:
    """``text`` with every character that is not printable escaped (``\\x1b``, ``\\n``):
    what a peer sent, fit to show on a terminal. Space separators (the ideographic space
    of a JPKI name) are shown as they are."""
    if text.isprintable():
        return text
    return "".join(c if _shown(c) else repr(c)[1:-1] for c in text)
