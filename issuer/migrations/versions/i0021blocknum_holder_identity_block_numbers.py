"""holders.identity, block numbers read further: the identity (``issuer.holders.identity_of``)
now reads the old-style (daiji) numerals 壱 弐 参 拾 (壹 貳 參) where it reads a kanji block
number (right before a block unit), and drops the leading zeros of the block numbers (a chain
of numbers joined by hyphens, a number right before a block unit; not a postal code, nor a
number right after a building's name in katakana or Latin letters:
``issuer.holders.identity_text``), so that the same address typed the usual other ways
(梅田弐丁目壱番弐号, 梅田02-01-02, 梅田〇二丁目〇一番〇二号, 梅田2-1-2) is one person to the
registry (and the one-phone rule refuses their second phone), where each was a holder of its
own. Recomputed as i0020addrnorm did, for the holders that have one (registered from a holder
file, not erased), oldest first: holders that are one person only in the new form keep the
oldest as the one matched, the later ones none (they stay apart, as they were; logged). A
holder without an identity stays without. The downgrade gives the holders that keep one the
identity of i0020addrnorm's form; one that lost its identity to an older holder stays without
(as after i0020addrnorm's downgrade).

Revision ID: i0021blocknum
Revises: i0020addrnorm
Create Date: 2026-12-07 15:00:00
"""

import hashlib
import json
import logging
import re
import unicodedata
from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

revision = "i0021blocknum"
down_revision = "i0020addrnorm"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")

#: The identity fields as i0016holderid hashed them (``issuer.holders.IDENTITY_FIELDS``).
_FIELDS = ("family_name", "given_name", "family_name_kana", "given_name_kana", "birth_date",
           "sex", "address", "prefecture", "municipality")


def _recompute(identity: Callable[[dict], str]) -> None:
    """Every holder with an identity gets ``identity(data)``, oldest first; one the identity
    of an older holder is given already gets none. The holders whose identity changes lose
    theirs first, so that no update meets the unique index on a value another row is yet to
    give up. (i0018idnorm's, copied: a migration stays as it was written.)"""
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT id, data, identity FROM holders WHERE identity IS NOT NULL "
                                "ORDER BY created_at, id")).all()
    seen: dict[str, str] = {}
    target: dict[str, str | None] = {}
    for holder_id, data, old in rows:
        data = json.loads(data) if isinstance(data, str) else data
        try:
            new = identity(data)
        except (KeyError, TypeError, ValueError, AttributeError):  # not a record with the identity fields
            new = None
        if new is not None and new in seen:
            log.warning("holder %s is the same person as holder %s: it keeps no identity", holder_id, seen[new])
            new = None
        if new is not None:
            seen[new] = holder_id
        if new != old:
            target[holder_id] = new
    for holder_id in target:
        conn.execute(sa.text("UPDATE holders SET identity = NULL WHERE id = :h"), {"h": holder_id})
    for holder_id, new in target.items():
        if new is not None:
            conn.execute(sa.text("UPDATE holders SET identity = :i WHERE id = :h"), {"i": new, "h": holder_id})


def _identity(text: Callable[[str, str], str], data: dict) -> str:
    """SHA-256 hex of the identity fields, each text in ``text``'s form, in canonical JSON."""
    values = [text(k, data[k]) if isinstance(data[k], str) else data[k] for k in _FIELDS]
    values[_FIELDS.index("sex")] = int(values[_FIELDS.index("sex")])
    encoded = json.dumps(values, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(encoded.encode()).hexdigest()


# Both forms frozen here (``issuer.holders.identity_text`` may change later; what this
# migration computes must not): i0020addrnorm's, and this revision's. What the two share
# is written once.
_DASHES = re.compile("[\u2010-\u2015\u2043\u2212\u2500\u2501]")
_DIGIT_CHOON = re.compile("(?<=[0-9])\u30FC(?=[0-9])")
_SPACES = re.compile(r"\s+")
_PLACE_FIELDS = frozenset({"address", "prefecture", "municipality"})
_KANJI_DIGIT = {c: str(i) for i, c in enumerate("〇一二三四五六七八九")}
_KANJI_COUNTED = re.compile("(?:([一二三四五六七八九])?千)?(?:([一二三四五六七八九])?百)?"
                            "(?:([一二三四五六七八九])?十)?([一二三四五六七八九])?")
_BLOCK_JOIN = re.compile("(?<=[0-9])(?:丁目|番地の|番地|番の|番|の)(?=[0-9])")
_BLOCK_END = re.compile("(?<=[0-9])(?:丁目|番地|番|号)(?=$|[\u30A1-\u30FAA-Za-z(])")
# i0020addrnorm's kanji numerals
_KANJI_NUMBER_I0020 = re.compile("(?<![〇一二三四五六七八九十百千])([〇一二三四五六七八九十百千]+)"
                                 "(?=丁目|番地|番|号|条|線|地割)")
# this revision's: the old-style numerals too, and the leading zeros of block numbers
_NUMERALS = "〇一二三四五六七八九十百千壱弐参拾壹貳參"
_DAIJI = str.maketrans("壱弐参拾壹貳參", "一二三十一二三")
_KANJI_NUMBER = re.compile(f"(?<![{_NUMERALS}])([{_NUMERALS}]+)(?=丁目|番地|番|号|条|線|地割)")
_NUMBER_CHAIN = re.compile("(?<![0-9])[0-9]+(?:-[0-9]+)*")
_UNIT_AFTER = re.compile("丁目|番地|条|線|地割|[番号](?=$|[\u30A1-\u30FAA-Za-z(])")
_BUILDING_LETTER = re.compile("[\u30A1-\u30FA\u30FCA-Za-z]")
_POSTAL_CODE = re.compile("[0-9]{3}-[0-9]{4}")


def _counted(given: str, run: str) -> str:
    """A run of kanji numerals (``run``, as ``given``) in ASCII digits: digit for digit
    without 十百千, else counted; ``given`` when it is neither."""
    if not any(c in "十百千" for c in run):
        return "".join(_KANJI_DIGIT[c] for c in run)
    counted = _KANJI_COUNTED.fullmatch(run)
    if counted is None:
        return given
    value = 0
    thousands, hundreds, tens, ones = counted.groups()
    for digit, unit, weight in ((thousands, "千", 1000), (hundreds, "百", 100), (tens, "十", 10)):
        if unit in run:
            value += weight * (int(_KANJI_DIGIT[digit]) if digit else 1)
    if ones:
        value += int(_KANJI_DIGIT[ones])
    return str(value)


def _kanji_number_i0020(match: re.Match) -> str:
    return _counted(match.group(1), match.group(1))


def _kanji_number(match: re.Match) -> str:
    return _counted(match.group(1), match.group(1).translate(_DAIJI))


def _unpadded(match: re.Match) -> str:
    """A chain of numbers without the leading zeros of its numbers, unless a postal code, a
    building's number, or a number alone before no block unit."""
    chain, text, start = match.group(0), match.string, match.start()
    before = text[start - 1:start]
    if before == "-":
        before = text[start - 2:start - 1]
    if text[start - 1:start] == "〒" or (start == 0 and _POSTAL_CODE.fullmatch(chain)):
        return chain
    if _BUILDING_LETTER.fullmatch(before) or ("-" not in chain and not _UNIT_AFTER.match(text, match.end())):
        return chain
    return "-".join(number.lstrip("0") or "0" for number in chain.split("-"))


def _text_i0020(field: str, value: str) -> str:
    """i0020addrnorm's form: NFKC, dashes folded; a name's white space collapsed; a place with
    white space dropped, kanji numerals before a block unit in digits, ー between digits and
    the block units between numbers ``-``, a block unit after the last number dropped, NFKC
    again."""
    text = _DASHES.sub("-", unicodedata.normalize("NFKC", value))
    if field not in _PLACE_FIELDS:
        return _SPACES.sub(" ", text).strip()
    text = _KANJI_NUMBER_I0020.sub(_kanji_number_i0020, _SPACES.sub("", text))
    text = _BLOCK_END.sub("", _BLOCK_JOIN.sub("-", _DIGIT_CHOON.sub("-", text)))
    return unicodedata.normalize("NFKC", text)


def _text_i0021(field: str, value: str) -> str:
    """This revision's form: i0020addrnorm's, with the old-style numerals read among the kanji
    ones and the block numbers' leading zeros dropped before a block unit after the last
    number is."""
    text = _DASHES.sub("-", unicodedata.normalize("NFKC", value))
    if field not in _PLACE_FIELDS:
        return _SPACES.sub(" ", text).strip()
    text = _KANJI_NUMBER.sub(_kanji_number, _SPACES.sub("", text))
    text = _NUMBER_CHAIN.sub(_unpadded, _BLOCK_JOIN.sub("-", _DIGIT_CHOON.sub("-", text)))
    return unicodedata.normalize("NFKC", _BLOCK_END.sub("", text))


def upgrade() -> None:
    _recompute(lambda data: _identity(_text_i0021, data))


def downgrade() -> None:
    _recompute(lambda data: _identity(_text_i0020, data))
