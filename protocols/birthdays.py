"""Birthdays, ages and the validity periods counted in birthdays: one rule for every party.

Two questions, two answers (Japanese law answers them differently):

* **How old is someone on a day** (:func:`age_on`): the age-reckoning act (年齢計算ニ関スル
  法律, with Civil Code art. 143) counts from the day of birth, so one is a year older from the
  birthday on; someone born on 29 February is a year older from 1 March in a common year
  (their year ends with 28 February). Used for ``age_over_NN``, the card's "under 18 at
  issue" and the signing certificate's "under 15".
* **When does something valid "until the n-th birthday" end** (:func:`nth_birthday_after`):
  the card (マイナンバーカード: the 10th birthday after issue, the 5th for a holder under 18
  at issue) and both JPKI certificates (the 5th). The My Number Act and the JPKI act do not
  say what a 29 February birthday is in a common year; the statutes that set a validity or
  renewal period by the birthday do, and take 28 February (みなし誕生日: the Road Traffic
  Act for a driving licence, the Firearms and Swords Act art. 7-2 for a permit). So do we: a
  validity counted in birthdays ends on 28 February in a common year. Our reading, written in
  specs/jpki-profile.md and specs/card-substitute-doctype.md.

Dates are calendar dates in Japan (:data:`JST`); :func:`today_in_japan` takes an instant to it.
"""

from __future__ import annotations

import calendar
import datetime as dt

JST = dt.timezone(dt.timedelta(hours=9), "JST")
#: The age from which the card runs 10 birthdays (before it, 5): 18 since 2022-04-01 (the age
#: of majority; the card of a holder who applied before then at 18 or 19 ran 5)
CARD_ADULT_AGE = 18
CARD_BIRTHDAYS_ADULT = 10
CARD_BIRTHDAYS_MINOR = 5


def today_in_japan(now: dt.datetime) -> dt.date:
    """The calendar date in Japan at the aware instant ``now``."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(JST).date()


def end_of_day_jst(day: dt.date) -> dt.datetime:
    """23:59:59 JST of ``day``, as an aware UTC datetime: the end of a validity that runs
    through ``day`` ("まで" is inclusive), a JPKI certificate's notAfter and an MSO's
    validUntil at the card's last day alike."""
    return dt.datetime.combine(day, dt.time(23, 59, 59), JST).astimezone(dt.UTC)


def birthday_in(birth: dt.date, year: int) -> dt.date:
    """The birthday in ``year`` that a validity counts: 29 February falls on 28 February in a
    common year (みなし誕生日)."""
    if birth.month == 2 and birth.day == 29 and not calendar.isleap(year):
        return dt.date(year, 2, 28)
    return birth.replace(year=year)


def nth_birthday_after(birth: dt.date, day: dt.date, n: int) -> dt.date:
    """The ``n``-th birthday strictly after ``day`` (one on ``day`` itself does not count)."""
    if n < 1:
        raise ValueError(f"n must be at least 1, not {n}")
    year = day.year
    if birthday_in(birth, year) <= day:
        year += 1
    return birthday_in(birth, year + n - 1)


def _age_birthday(birth: dt.date, year: int) -> dt.date:
    """The day one is a year older in ``year``: 29 February counts as 1 March in a common
    year (age-reckoning act)."""
    try:
        return birth.replace(year=year)
    except ValueError:
        return dt.date(year, 3, 1)


def turns(birth: dt.date, age: int) -> dt.date:
    """The first day on which someone born on ``birth`` is ``age`` years old."""
    return _age_birthday(birth, birth.year + age)


def age_on(birth: dt.date, day: dt.date) -> int:
    """Completed years of age on ``day`` (age-reckoning act)."""
    years = day.year - birth.year
    return years if day >= _age_birthday(birth, day.year) else years - 1


def card_expiry(birth: dt.date, card_issue: dt.date) -> dt.date:
    """The card's last valid day by rule: the 10th birthday after issue, the 5th for a holder
    under 18 on the day of issue (マイナンバーカードの有効期限)."""
    n = CARD_BIRTHDAYS_ADULT if age_on(birth, card_issue) >= CARD_ADULT_AGE else CARD_BIRTHDAYS_MINOR
    return nth_birthday_after(birth, card_issue, n)
