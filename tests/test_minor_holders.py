"""Holders who are minors (seed 004, 「マイナンバーカード等の有効期限」): the card of a holder
under 18 at issue runs to the 5th birthday (not the 10th), one rule for the registry and the
mdoc (protocols.birthdays); and no signing certificate (署名用電子証明書) for a holder under 15."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy.orm import sessionmaker

from issuer.db import Holder
from issuer.holders import register, renew_card
from mcred.db import make_engine, migrate
from protocols import birthdays
from protocols.cardsub import card_expiry, parse_holder
from protocols.jpki.validity import NthBirthday

HOLDER = {"family_name": "山田", "given_name": "花子", "family_name_kana": "ヤマダ",
          "given_name_kana": "ハナコ", "birth_date": "1990-04-01", "sex": 2,
          "address": "東京都千代田区霞が関1-1", "prefecture": "東京都", "municipality": "千代田区"}
#: 2026-06-01 in Japan (03:00 UTC = 12:00 JST)
NOW = dt.datetime(2026, 6, 1, 3, 0, tzinfo=dt.UTC)


@pytest.fixture
def sessions(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'reg.db'}")
    migrate(engine)
    yield sessionmaker(engine, expire_on_commit=False)
    engine.dispose()


def _registered_expiry(sessions, birth: str, now: dt.datetime = NOW) -> dt.date:
    hid = register(sessions, parse_holder(dict(HOLDER, birth_date=birth), today=dt.date(2026, 6, 1)), now=now)
    with sessions() as s:
        return s.get(Holder, hid).card_expiry


@pytest.mark.parametrize(("birth", "expiry"), [
    ("2016-05-10", "2031-05-10"),  # 10 years old: the 5th birthday after issue
    ("2008-06-02", "2030-06-02"),  # 17 (18 tomorrow, the 1st birthday after): under 18 at issue, the 5th
    ("2008-06-01", "2036-06-01"),  # 18 today: the 10th (the birthday of issue does not count)
    ("1990-04-01", "2036-04-01"),  # an adult: the 10th, as before
])
def test_the_registry_gives_a_minor_a_card_until_the_5th_birthday(sessions, birth, expiry):
    """`mcred holder show` said "until 2036-05-10" for a 10-year-old: the registry counted 10
    birthdays whatever the age, where the card (and the mdoc's own rule) counts 5 under 18."""
    assert _registered_expiry(sessions, birth) == dt.date.fromisoformat(expiry)
    assert card_expiry(dt.date.fromisoformat(birth), dt.date(2026, 6, 1)) == dt.date.fromisoformat(expiry)


def test_a_29_february_birthday_ends_a_validity_on_28_february_everywhere(sessions):
    """The registry and the JPKI certificates took 28 February in a common year, the mdoc's
    card validity 1 March: one rule now (みなし誕生日), while age still turns on 1 March."""
    leap = dt.date(2012, 2, 29)  # 14 on 2026-06-01: the 5th birthday after is in 2031
    assert _registered_expiry(sessions, "2012-02-29") == dt.date(2031, 2, 28)
    assert card_expiry(leap, dt.date(2026, 6, 1)) == dt.date(2031, 2, 28)
    assert NthBirthday(5).last_day(dt.date(2026, 6, 1), leap) == dt.date(2031, 2, 28)
    adult = dt.date(1988, 2, 29)
    assert card_expiry(adult, dt.date(2026, 6, 1)) == dt.date(2036, 2, 29)  # a leap year
    assert card_expiry(adult, dt.date(2027, 6, 1)) == dt.date(2037, 2, 28)
    # issued on 28 February of a common year, that birthday is the day of issue: not counted
    assert card_expiry(adult, dt.date(2027, 2, 28)) == dt.date(2037, 2, 28)
    assert card_expiry(adult, dt.date(2027, 2, 27)) == dt.date(2036, 2, 29)
    # age reckoning is another question: a year older on 1 March in a common year
    assert birthdays.age_on(leap, dt.date(2027, 2, 28)) == 14
    assert birthdays.age_on(leap, dt.date(2027, 3, 1)) == 15


def test_a_card_issued_on_the_day_japan_is_already_on(sessions):
    """The day of issue is the date in Japan: at 23:30 UTC on 31 May it is 1 June in Tokyo,
    the 18th birthday of a holder born 2008-06-01, who gets 10 birthdays."""
    late = dt.datetime(2026, 5, 31, 23, 30, tzinfo=dt.UTC)
    assert _registered_expiry(sessions, "2008-06-01", late) == dt.date(2036, 6, 1)


def test_a_renewed_card_of_a_minor_runs_5_birthdays(sessions):
    hid = register(sessions, parse_holder(dict(HOLDER, birth_date="2016-05-10")), now=NOW)
    out = renew_card(sessions, hid, actor="t", reason="renewed", now=NOW)
    assert out["card_expiry"] == "2031-05-10"
