"""The fields of a persisted applet state (NVM image) read back exactly as an applet wrote
them: a byte string is ``bytes`` and an integer an ``int``, never something Python would
turn into one. ``bytes(False)`` is ``b""`` and ``bytes(10**12)`` a terabyte of zeros; ``False``
passes ``0 <= x <= 3`` and is then written back as a boolean, which the SE image cannot keep
(wallet_sim.se.store), so the next command's save failed half way instead of the image being
refused when it was loaded."""

from __future__ import annotations

from wallet_sim.applets.errors import AppletStateError


def state_bytes(value: object, what: str) -> bytes:
    """``value`` if it is a byte string, else :class:`AppletStateError` naming ``what``."""
    if type(value) is not bytes:
        raise AppletStateError(f"{what}: a {type(value).__name__}, not a byte string")
    return value


def state_int(value: object, what: str, low: int, high: int) -> int:
    """``value`` if it is an integer (not a boolean) from ``low`` to ``high``, else
    :class:`AppletStateError` naming ``what``."""
    if type(value) is not int or not low <= value <= high:
        raise AppletStateError(f"{what}: {value!r} is not an integer {low}..{high}")
    return value
