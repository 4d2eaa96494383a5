"""Japanese era digit of the JPKI birth date (`1.2.392.200149.8.5.5.4`).

The value is `E` + `YYYYMMDD`: `E` is the era the date falls in (1 Meiji, 2 Taisho, 3 Showa,
4 Heisei, 5 Reiwa, 0 unknown) and `YYYYMMDD` is the *Gregorian* date, not the year of the
era (so `319800217` is 1980-02-17, Showa 55). Era first days are the Gregorian dates of the
proclamations (Meiji taken from 1868-01-25, the retroactive start of Meiji 1).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date

from .errors import BirthDateError


class Era(enum.IntEnum):
    UNKNOWN = 0
    MEIJI = 1
    TAISHO = 2
    SHOWA = 3
    HEISEI = 4
    REIWA = 5


ERA_FIRST_DAY: tuple[tuple[Era, date], ...] = (
    (Era.REIWA, date(2019, 5, 1)),
    (Era.HEISEI, date(1989, 1, 8)),
    (Era.SHOWA, date(1926, 12, 25)),
    (Era.TAISHO, date(1912, 7, 30)),
    (Era.MEIJI, date(1868, 1, 25)),
)


def era_of(day: date) -> Era:
    """The era `day` falls in; `Era.UNKNOWN` before Meiji."""
    for era, first in ERA_FIRST_DAY:
        if day >= first:
            return era
    return Era.UNKNOWN


@dataclass(frozen=True)
class JpkiBirthDate:
    """A decoded birth date: the era digit as written and the Gregorian date."""

    era: Era
    date: date

    def encode(self) -> str:
        return f"{int(self.era)}{self.date:%Y%m%d}"


def encode_birth_date(day: date) -> str:
    """`E` + `YYYYMMDD` for `day` (the era digit computed from the date)."""
    if day.year < 1000:
        raise BirthDateError(f"birth date {day.isoformat()} has no 4-digit year")
    return JpkiBirthDate(era_of(day), day).encode()


def decode_birth_date(value: str) -> JpkiBirthDate:
    """Parse `E` + `YYYYMMDD`; the digit must be 0 or the era of the date."""
    if len(value) != 9 or not value.isascii() or not value.isdigit():
        raise BirthDateError(f"birth date {value!r} is not 9 ASCII digits (E + YYYYMMDD)")
    digit = int(value[0])
    if digit > Era.REIWA:
        raise BirthDateError(f"birth date {value!r}: era digit {digit} is not 0-5")
    try:
        day = date(int(value[1:5]), int(value[5:7]), int(value[7:9]))
    except ValueError:
        raise BirthDateError(f"birth date {value!r}: {value[1:]} is not a date") from None
    era = Era(digit)
    if era is not Era.UNKNOWN and era_of(day) is not era:
        raise BirthDateError(
            f"birth date {value!r}: era digit {digit} ({era.name}) but {day.isoformat()} "
            f"falls in {era_of(day).name}"
        )
    return JpkiBirthDate(era, day)
