"""Index allocation: random within the list, never reused.

draft-ietf-oauth-status-list section 12.5 (privacy: unlinkability, "the Issuer SHOULD
choose indices randomly"): an index given out in issuance order would tell a reader
roughly when a credential was issued and link credentials issued together.

The scheme is rejection sampling: draw a uniform index with a caller-supplied random
source, retry while it is already used. It is pure (the caller passes the RNG, normally
``secrets.SystemRandom()``, and the set of used indices, which the issuer's registry
stores) and exactly uniform over the free indices. The expected number of draws is
``1 / (1 - fill)``; past ``max_fill`` the list is declared full so an allocation never
loops long: the issuer then starts a new list (lists are per issuance period anyway).
"""

from __future__ import annotations

from collections.abc import Container, Sized
from typing import Protocol

from protocols.status.errors import StatusListFullError, StatusValueError

DEFAULT_MAX_FILL = 0.75
_MAX_DRAWS = 4096  # P(all draws hit used) at fill 0.75 is 0.75**4096: never in practice


class RandomSource(Protocol):
    """What :func:`allocate_index` needs of an RNG (``random.Random``, ``SystemRandom``)."""

    def randrange(self, stop: int, /) -> int: ...


class UsedIndices(Container[int], Sized, Protocol):
    """The indices already handed out in this list (a ``set`` is fine)."""


def allocate_index(
    size: int,
    used: UsedIndices,
    rng: RandomSource,
    *,
    max_fill: float = DEFAULT_MAX_FILL,
) -> int:
    """A uniformly random index in ``[0, size)`` not in ``used``.

    Raises :class:`StatusListFullError` once ``len(used) >= max_fill * size``.
    """
    if type(size) is not int or size <= 0:
        raise StatusValueError(f"size must be a positive int, got {size!r}")
    if not 0.0 < max_fill <= 1.0:
        raise StatusValueError(f"max_fill must be in (0, 1], got {max_fill!r}")
    if len(used) >= max_fill * size:
        raise StatusListFullError(
            f"{len(used)} of {size} indices used (max fill {max_fill:.0%}): start a new list"
        )
    for _ in range(_MAX_DRAWS):
        index = rng.randrange(size)
        if index not in used:
            return index
    raise StatusListFullError(f"no free index found in {_MAX_DRAWS} draws: start a new list")
