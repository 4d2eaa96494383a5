"""How old a cached artefact is, by the monotonic clock and by the wall clock both.

A process caches what it made or read (the TSA's CRL and unit, the OCSP responder set) for
some seconds. ``time.monotonic()`` alone is not enough: on Linux CLOCK_MONOTONIC stops while
the machine (or its VM) is suspended, so after a night's suspend a 60-second cache would be
served on for another 60 seconds by the wall clock, a CRL past its nextUpdate among it. The
wall clock alone is not enough either (a step back of the clock would keep a cache forever).
So the age is the larger of the two, and a wall clock that went back before the stamp counts
as stale (what was made "in the future" is made again).
"""

from __future__ import annotations

import datetime as dt
import math
import time
from typing import NamedTuple


class Stamp(NamedTuple):
    """When something was cached: the monotonic reading and the wall-clock time (the clock
    the caller reads: its injected ``clock``)."""

    monotonic: float
    wall: dt.datetime

    @classmethod
    def now(cls, wall: dt.datetime) -> Stamp:
        return cls(time.monotonic(), wall)

    def age(self, wall_now: dt.datetime) -> float:
        """Seconds since the stamp: the larger of the monotonic and the wall-clock interval;
        infinite when the wall clock is now before the stamp."""
        wall = (wall_now - self.wall).total_seconds()
        if wall < 0:
            return math.inf
        return max(time.monotonic() - self.monotonic, wall)


#: a stamp older than any cache: what is due to be made or read again
NEVER = Stamp(-math.inf, dt.datetime.min.replace(tzinfo=dt.UTC))
