"""Validity rules of the JPKI end-entity certificates.

Public sources (see specs/jpki-profile.md): both certificates are valid "from the day of issue
until the 5th birthday" (発行の日から5回目の誕生日まで); "まで" is inclusive, so the
certificate is valid through the whole birthday: notAfter is 23:59:59 JST (UTC+9) on it.
Birthdays are counted strictly after the day of issue (a certificate issued on a birthday
does not count that day). A 29 February birthday falls on 28 February in common years: the
rule of every validity counted in birthdays, the card's too (:mod:`protocols.birthdays`).
The result is capped by the card's expiry (the card is valid through that day).
The next card (ECDSA P-384) moves certificates to 10 years; `NthBirthday(10)` anchors that on
the 10th birthday like the card, `FixedYears(10)` is the literal reading.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Protocol

from protocols.birthdays import JST, birthday_in, end_of_day_jst, nth_birthday_after

from .errors import ProfileError

__all__ = ["CURRENT_CARD_RULE", "JST", "NEXT_CARD_RULE", "FixedYears", "NthBirthday", "Validity",
           "ValidityRule", "end_entity_validity", "end_of_day_jst", "nth_birthday_after"]


class ValidityRule(Protocol):
    def last_day(self, issued_on: date, birth_date: date) -> date: ...


@dataclass(frozen=True)
class NthBirthday:
    """Valid through the n-th birthday after issue (today's card: n = 5)."""

    n: int = 5

    def last_day(self, issued_on: date, birth_date: date) -> date:
        return nth_birthday_after(birth_date, issued_on, self.n)


@dataclass(frozen=True)
class FixedYears:
    """Valid through the day before the same date `years` later."""

    years: int = 10

    def last_day(self, issued_on: date, birth_date: date) -> date:
        return birthday_in(issued_on, issued_on.year + self.years) - timedelta(days=1)


CURRENT_CARD_RULE = NthBirthday(5)
NEXT_CARD_RULE = NthBirthday(10)


@dataclass(frozen=True)
class Validity:
    not_before: datetime
    not_after: datetime

    def __post_init__(self) -> None:
        for label, value in (("not_before", self.not_before), ("not_after", self.not_after)):
            if value.tzinfo is None:
                raise ProfileError(f"validity {label} {value!r} must be timezone-aware")
        if self.not_after <= self.not_before:
            raise ProfileError(
                f"validity ends {self.not_after.isoformat()} before it starts "
                f"{self.not_before.isoformat()}"
            )

    def contains(self, at: datetime) -> bool:
        return self.not_before <= at <= self.not_after


def end_entity_validity(
    rule: ValidityRule,
    issued_at: datetime,
    birth_date: date,
    card_expiry: date | None = None,
) -> Validity:
    """notBefore = `issued_at`; notAfter = end (JST) of the rule's last day, capped by the card."""
    if issued_at.tzinfo is None:
        raise ProfileError("issued_at must be timezone-aware")
    issued_on = issued_at.astimezone(JST).date()
    if birth_date > issued_on:
        raise ProfileError(f"birth date {birth_date} is after the day of issue {issued_on}")
    last = rule.last_day(issued_on, birth_date)
    if card_expiry is not None:
        if card_expiry < issued_on:  # said as what it is, not as a validity that ends before it starts
            raise ProfileError(f"the card ended {card_expiry.isoformat()} (valid through that day in Japan), "
                               f"before the day of issue {issued_on.isoformat()}: no certificate outlives "
                               "the card; renew the card first")
        last = min(last, card_expiry)
    return Validity(issued_at.astimezone(UTC), end_of_day_jst(last))
