"""Who one person is to the issuer's registry (``issuer.holders.identity_of``): the identity
fields compared in one form, whatever width of digits, dashes and spaces they were typed in,
and an address whichever usual way its block numbers were written in (kanji or digits,
丁目/番地/号 or hyphens, a space or none)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
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
    {"address": "東京都千代田区千代田1-1-2コーポ101"},  # in a place a space is dropped
    {"address": "東京都 千代田区 千代田 1-1-2 コーポ 101"},
    {"address": "東京都千代田区千代田一丁目1番2号 コーポ101"},  # kanji numerals, block units
    {"address": "東京都千代田区千代田1丁目1番地の2コーポ101"},
    {"address": "東京都千代田区千代田1の1の2 コーポ101"},
    {"address": "東京都千代田区千代田一丁目一番二号コーポ101"},
    {"address": "東京都千代田区千代田1丁目1-2号 コーポ101"},
    {"prefecture": "東 京 都", "municipality": "千代田 区"},
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
    {"address": "東京都千代田区千代田1-1-2 コーポ-101"},  # ー not between digits is the word's
    {"address": "東京都千代田区千代田1-1-2号室"},  # a unit before a kanji is kept...
    {"address": "東京都千代田区千代田1-1-2号コーポ1"},  # ...and the building's number is its own
    {"address": "東京都千代田区千代田11-2 コーポ101"},
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


#: One address written the usual ways: kanji or ASCII numbers, 丁目/番地/番/号/の or hyphens,
#: a space or none (Osaka; Hokkaido's 条).
UMEDA = ("大阪府大阪市北区梅田二丁目1番2号", "大阪府大阪市北区梅田2丁目1番2号", "大阪府大阪市北区梅田2-1-2",
         "大阪府大阪市北区梅田2丁目1-2", "大阪府大阪市北区梅田2丁目1番地の2", "大阪府大阪市北区梅田2丁目1の2",
         "大阪府大阪市北区梅田二丁目一番二号", "大阪府大阪市北区梅田２－１－２", "大阪府 大阪市北区 梅田2-1-2",
         "大阪府大阪市北区梅田二丁目1番地2")
SAPPORO = ("北海道札幌市中央区北一条西二丁目1", "北海道札幌市中央区北1条西2-1", "北海道札幌市中央区北1条西2丁目1番地",
           "北海道札幌市中央区北一条西二丁目一番地")


#: The same address in old-style (daiji) numerals, 壱 弐 参 拾 and 壹 貳 參, as a register of
#: old may give it, and with leading zeros (a form's fixed-width boxes, 〇一 in kanji).
DAIJI = ("大阪府大阪市北区梅田弐丁目壱番弐号", "大阪府大阪市北区梅田貳丁目壹番貳号", "大阪府大阪市北区梅田弐丁目1番地の2",
         "大阪府大阪市北区梅田二丁目一番二号", "大阪府大阪市北区梅田2-1-2")
ZEROS = ("大阪府大阪市北区梅田02丁目01番02号", "大阪府大阪市北区梅田2-01-002", "大阪府大阪市北区梅田０２－０１－０２",
         "大阪府大阪市北区梅田〇二丁目〇一番〇二号", "大阪府大阪市北区梅田2丁目01の02", "大阪府大阪市北区梅田2-1-2")


@pytest.mark.parametrize("variants", [UMEDA, SAPPORO, ("大阪市北区 1-1", "大阪市北区1-1", "大阪市北区一丁目1番"),
                                      DAIJI, ZEROS, ("北海道札幌市中央区北01条西02丁目01", "北海道札幌市中央区北壱条西弐丁目1",
                                                     "北海道札幌市中央区北1条西2-1")],
                         ids=["umeda", "hokkaido-jo", "space", "daiji", "zeros", "hokkaido-zeros"])
def test_an_address_in_its_usual_variants_is_one_person(variants):
    """The same address in kanji or ASCII numbers, block units or hyphens, with a space or
    none, was a person of its own each time, escaping the one-phone rule."""
    people = {holders.identity_of(dict(PERSON, address=a)) for a in variants}
    assert len(people) == 1, [holders.identity_text("address", a) for a in variants]


@pytest.mark.parametrize("text, form", [
    ("二十三番地", "23"), ("十号", "10"), ("百五番", "105"), ("二〇丁目", "20"), ("千二百号", "1200"),
    ("九十九番地の一号", "99-1"), ("第十一地割", "第11地割"), ("上十条一丁目", "上10条1"),
    ("千〇五番", "千〇五番"), ("十十番", "十十番"),  # not a numeral: kept
    ("1-2号室", "1-2号室"), ("3号棟", "3号棟"), ("1番町", "1番町"), ("一番町1-2", "1番町1-2"),
    ("1番地(梅田ビル)", "1(梅田ビル)"), ("1-2号ABCビル", "1-2ABCビル"),
    ("弐拾参番地", "23"), ("拾号", "10"), ("壱拾壱番", "11"), ("參百五番", "305"), ("弐〇丁目", "20"),
    ("壹番地の2", "1-2"), ("壱番町", "1番町"), ("参条", "3条"), ("拾拾番", "拾拾番"),  # old-style numerals; not a numeral: kept
    ("01丁目", "1"), ("０１丁目", "1"), ("〇一丁目", "1"), ("00番地", "0"), ("2-01-003", "2-1-3"),
    ("第〇三地割", "第3地割"), ("010番地(梅田ビル)", "10(梅田ビル)"), ("2-1-02号ABCビル", "2-1-2ABCビル"),
])
def test_block_numbers_are_folded_and_nothing_else(text, form):
    assert holders.identity_text("address", text) == form


@pytest.mark.parametrize("place", ["四日市市", "一宮市", "三鷹市", "八王子市", "六本木", "九段北", "十日町市",
                                   "八丁堀", "千代田区", "九十九里町", "五反田", "三軒茶屋", "一之江"])
def test_a_place_name_with_kanji_numerals_is_kept(place):
    for field in ("address", "municipality", "prefecture"):
        assert holders.identity_text(field, place) == place
    assert holders.identity_text("address", f"東京都港区{place}六丁目10番1号") == f"東京都港区{place}6-10-1"


@pytest.mark.parametrize("place", ["参宮橋", "壱岐市", "拾石町", "四日市市", "一宮市", "八丁堀", "十日町市",
                                   "九十九里町"])
def test_old_style_numerals_are_numbers_only_before_a_block_unit(place):
    """弐丁目 is 2丁目, and 参 of 参宮橋, 壱 of 壱岐, 拾 of 拾石 are letters of a name."""
    for field in ("address", "municipality", "prefecture"):
        assert holders.identity_text(field, place) == place
    assert holders.identity_text("address", f"東京都渋谷区{place}弐丁目拾番参号") == f"東京都渋谷区{place}2-10-3"
    assert holders.identity_text("address", f"東京都渋谷区{place}02-010-3") == f"東京都渋谷区{place}2-10-3"


@pytest.mark.parametrize("text, form", [
    ("〒100-0001 東京都千代田区千代田01丁目01番", "〒100-0001東京都千代田区千代田1-1"),  # a postal code...
    ("〒1000001東京都千代田区千代田01-01", "〒1000001東京都千代田区千代田1-1"),
    ("100-0001 東京都千代田区千代田1-01-02", "100-0001東京都千代田区千代田1-1-2"),  # ...also without 〒, at the start
    ("100ー0001 東京都千代田区千代田1ー01", "100-0001東京都千代田区千代田1-1"),
    ("〒010-0001 秋田県秋田市中通02-01", "〒010-0001秋田県秋田市中通2-1"),
    ("千代田01-02 コーポ0101", "千代田1-2コーポ0101"),  # a building's and a room's number...
    ("千代田1-02 コーポ1-01", "千代田1-2コーポ1-01"),
    ("千代田1-02 A-01", "千代田1-2A-01"),
    ("千代田1-02 タワー05", "千代田1-2タワー05"),
    ("千代田1-02 梅田ビル0201", "千代田1-2梅田ビル0201"),
    ("千代田1-02 梅田荘0101号室", "千代田1-2梅田荘0101号室"),  # ...a number before 号室, 号棟, 番町...
    ("千代田01-2 第03号棟", "千代田1-2第03号棟"),
    ("千代田区01番町1-02", "千代田区01番町1-2"),
    ("中之条町大字四万四千二百二十八番地の02", "中之条町大字四万4228-2"),  # ...and 万, a place's name here
])
def test_block_numbers_lose_their_leading_zeros_and_nothing_else_does(text, form):
    assert holders.identity_text("address", text) == form


def _kanji(number: int, *, counted: bool, daiji: bool, zeros: int) -> str:
    """``number`` in kanji: digit for digit (〇 for a leading zero), or counted (二十三,
    弐拾参); old-style (daiji) 壱 弐 参 拾 or 壹 貳 參 where ``daiji``."""
    digits = ("〇壱弐参四五六七八九" if daiji == "new" else "〇壹貳參四五六七八九") if daiji else "〇一二三四五六七八九"
    if not counted:
        return "〇" * zeros + "".join(digits[int(c)] for c in str(number))
    if number == 0:
        return "〇"
    text = ""
    for weight, unit in ((1000, "千"), (100, "百"), (10, "拾" if daiji else "十")):
        digit = number // weight % 10
        if digit:
            text += ("" if digit == 1 and not daiji else digits[digit]) + unit
    return text + (digits[number % 10] if number % 10 else "")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1999), st.integers(0, 2),
                          st.sampled_from(["ascii", "wide", "kanji", "counted"]), st.sampled_from([False, "new", "old"])),
                min_size=1, max_size=3),
       st.booleans())
def test_a_block_number_is_its_value_however_written(numbers, hyphens):
    """Each block number in ASCII or full-width digits, kanji or old-style numerals, digit for
    digit or counted, with leading zeros or none, is its value; a building's number after it
    keeps its zero."""
    hyphens = hyphens and len(numbers) > 1
    parts = []
    for number, zeros, style, daiji in numbers:
        if style in ("kanji", "counted") and not hyphens:
            parts.append(_kanji(number, counted=style == "counted", daiji=daiji, zeros=zeros))
        else:
            ascii_number = "0" * zeros + str(number)
            parts.append(ascii_number.translate(str.maketrans("0123456789", "０１２３４５６７８９"))
                         if style == "wide" else ascii_number)
    if hyphens:
        block = "-".join(parts)
    else:
        block = "".join(p + u for p, u in zip(parts, ("丁目", "番", "号"), strict=False))
    text = f"東京都港区六本木{block} コーポ0101"
    form = "東京都港区六本木" + "-".join(str(n) for n, *_ in numbers) + "コーポ0101"
    assert holders.identity_text("address", text) == form


def test_names_and_their_kana_are_not_addresses():
    for field in ("family_name", "given_name", "family_name_kana", "given_name_kana"):
        assert holders.identity_text(field, "一 二丁目 1番2号") == "一 二丁目 1番2号"
    assert holders.identity_of(dict(PERSON, given_name="太郎 一")) != holders.identity_of(dict(PERSON, given_name="太郎一"))


_PLACE_ALPHABET = st.sampled_from(list("〇一二三四五六七八九十百千壱弐参拾壹參万丁目番地号条線割の町室棟012０-ー－ \u3000\t"
                                       "コーポAa(（\u0301\u3099\u309b\u00a8ﾞｰ東京都〒") + ["丁目", "番地", "地割", "00", "0〇"])


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(holders._PLACE_FIELDS)),
       st.one_of(st.lists(_PLACE_ALPHABET, max_size=16).map("".join), st.text(max_size=24)))
def test_the_place_form_is_its_own_form_and_never_raises(field, text):
    once = holders.identity_text(field, text)
    assert holders.identity_text(field, once) == once


def test_the_second_variant_of_a_person_finds_the_first_holder(engine):
    """Registered from holder files with the address typed two ways, the person is one
    holder: the second registration returns the first, whose record keeps its text."""
    sessions = sessionmaker(engine)
    kanji = dict(PERSON, address="大阪府大阪市北区梅田二丁目1番2号 コーポ梅田", prefecture="大阪府", municipality="大阪市北区")
    first = holders.register(sessions, kanji)
    hyphens = dict(kanji, address="大阪府大阪市北区梅田2-1-2コーポ梅田", municipality="大阪市 北区")
    assert holders.registered(sessions, hyphens) == first
    assert holders.register(sessions, hyphens) == first
    assert holders.registered(sessions, dict(kanji, address="大阪府大阪市北区梅田2-1-3コーポ梅田")) is None
    with sessions() as s:
        (row,) = s.scalars(select(Holder)).all()
        assert row.data["address"] == kanji["address"] and row.data["municipality"] == "大阪市北区"
