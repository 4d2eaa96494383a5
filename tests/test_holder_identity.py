"""Who one person is to the issuer's registry (``issuer.holders.identity_of``): the identity
fields compared in one form, whatever width of digits, dashes and spaces they were typed in."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from issuer import holders
from issuer.db import Holder

PERSON = {"family_name": "山田", "given_name": "太郎", "family_name_kana": "ヤマダ",
          "given_name_kana": "タロウ", "birth_date": "1990-04-01", "sex": 1,
          "address": "東京都千代田区千代田1-1-2 コーポ101", "prefecture": "東京都", "municipality": "千代田区"}


@pytest.mark.parametrize("changes", [
    {"address": "東京都千代田区千代田１－１－２　コーポ１０１"},  # full-width digits, hyphen-minus, space
    {"address": "東京都千代田区千代田1\u22121\u20102 コーポ101"},  # minus sign, hyphen
    {"address": "東京都千代田区千代田1\u20131\u20142  コーポ101"},  # en and em dash, two spaces
    {"address": "東京都千代田区千代田1ー1ｰ2 コーポ101"},  # the long vowel mark for a dash, between digits
    {"address": "東京都千代田区千代田1\u20151\u22122\u3000\u3000コーポ101 "},  # horizontal bar, spaces around
    {"given_name": " 太郎\u3000", "family_name": "山田\t"},
    {"family_name_kana": "ﾔﾏﾀﾞ", "given_name_kana": "ﾀﾛｳ"},  # half-width katakana
    {"municipality": "千代田区\u3000", "prefecture": "東京都 "},
], ids=lambda c: ",".join(c))
def test_the_same_person_typed_otherwise_is_one_identity(changes):
    assert holders.identity_of(dict(PERSON, **changes)) == holders.identity_of(PERSON)


@pytest.mark.parametrize("changes", [
    {"given_name_kana": "タアロウ"},
    {"given_name_kana": "ターロウ"},  # ー in a name's kana is a letter of it...
    {"given_name_kana": "タ-ロウ"},  # ...and never a dash
    {"given_name": "ター郎"},
    {"family_name_kana": "やまだ"},  # hiragana and katakana are two readings the registry keeps apart
    {"address": "東京都千代田区千代田1-1-3 コーポ101"},
    {"address": "東京都千代田区千代田1-1-2コーポ101"},  # a space is collapsed, not dropped
    {"address": "東京都千代田区千代田1-1-2 コーポ-101"},  # ー not between digits is the word's
    {"birth_date": "1990-04-02"},
    {"sex": 2},
], ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_other_people_stay_other_people(changes):
    assert holders.identity_of(dict(PERSON, **changes)) != holders.identity_of(PERSON)


def test_a_place_word_keeps_its_long_vowel_mark():
    assert holders.identity_text("address", "センター1ー2") == "センター1-2"
    assert holders.identity_text("given_name_kana", "1ー2") == "1ー2"  # a name's ー is never folded


def test_the_record_keeps_its_text_and_the_person_typed_again_is_the_same_holder(engine):
    sessions = sessionmaker(engine)
    wide = dict(PERSON, given_name="太郎\u3000", address="東京都千代田区千代田１－１－２　コーポ１０１")
    first = holders.register(sessions, wide)
    assert holders.register(sessions, PERSON) == first
    assert holders.registered(sessions, dict(PERSON, address="東京都千代田区千代田1ー1ー2 コーポ101")) == first
    with sessions() as s:
        (row,) = s.scalars(select(Holder)).all()
        assert row.data["address"] == wide["address"] and row.data["given_name"] == "太郎\u3000"
        assert row.identity == holders.identity_of(PERSON)
