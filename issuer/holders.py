"""Register holders (residents whose card the phone credentials derive from) and their phones.

A holder comes in as a parsed ``protocols.cardsub`` ``Holder`` (or any object / mapping with
the same field names): family_name, given_name, family_name_kana, given_name_kana,
birth_date, sex (ISO/IEC 5218), address, prefecture, municipality, optionally
municipality_code, card_number, card_expiry (or card_expiry_date). PIN, password and
portrait are never stored here. One card number per holder (database
constraint): registering the same card again returns the same holder; the same card number
with different data is refused. A record without a card number (a holder file, a
``POST /provisioning`` body) is the person its :data:`IDENTITY_FIELDS` name (``holders.identity``,
unique; compared normalised, :func:`identity_text`: full-width or half-width digits, dashes
and spaces, and an address's block numbers in kanji (old-style 壱弐参拾 too), with leading
zeros or none, 丁目/番地/号 or hyphens, are one person): registering the same person again returns the same holder, also
when two registrations race. A simulated card number is 16 random digits; the simulated
card is valid until the holder's 10th birthday after today in Japan, the 5th for a holder
under 18 (``protocols.birthdays.card_expiry``, the rule the mdoc's card validity follows).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import re
import secrets
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence

from sqlalchemy import Connection, func, literal, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from issuer.db import AuditEvent, Credential, Holder, Phone, unindexed, utcnow
from protocols.birthdays import card_expiry as _card_expiry
from protocols.birthdays import today_in_japan

#: A phone id the issuer records (``phones.id``, 64 wide): lower-case letters, digits and
#: hyphens, at most 63, as the HTTP API and the wallet simulator take them.
PHONE_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
_PHONE_ID = re.compile(PHONE_ID_PATTERN)

FIELDS = ("family_name", "given_name", "family_name_kana", "given_name_kana", "birth_date",
          "sex", "address", "prefecture", "municipality")
OPTIONAL = ("municipality_code", "family_name_roman", "given_name_roman")
#: A municipality code: the 6-digit local government code (全国地方公共団体コード), ASCII. It
#: names the holder's CRL partition in every certificate's CRL URL (specs/jpki-profile.md).
_MUNICIPALITY_CODE = re.compile(r"[0-9]{6}")


class HolderError(Exception):
    """A holder record is incomplete or conflicts with the registry."""


class CardNumberTaken(HolderError):
    """The card number is registered already (to another holder, or it is this holder's card)."""


def _plain(value):  # noqa: ANN001, ANN202
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    return value


def holder_data(holder) -> dict:  # noqa: ANN001
    """The JSON stored in ``holders.data`` from a cardsub Holder, dataclass or mapping."""
    if isinstance(holder, Mapping):
        source = dict(holder)
    elif dataclasses.is_dataclass(holder):
        source = {f.name: getattr(holder, f.name) for f in dataclasses.fields(holder)}
    else:
        source = {k: getattr(holder, k) for k in (*FIELDS, *OPTIONAL) if hasattr(holder, k)}
    missing = [f for f in FIELDS if source.get(f) in (None, "")]
    if missing:
        raise HolderError(f"holder record lacks {', '.join(missing)}")
    data = {k: _plain(source[k]) for k in FIELDS}
    data["sex"] = int(data["sex"])
    for k in OPTIONAL:
        if source.get(k) not in (None, ""):
            data[k] = _plain(source[k])
    return data


#: What the registry takes a person to be when no card names them (a holder file): every
#: field of the card data a holder record must carry, the basic four (names, birth date,
#: sex, address) with the reading in kana and the municipality. The Roman-letter name, the
#: municipality code and the card's expiry may be added or corrected later and say nothing
#: against it being the same person.
IDENTITY_FIELDS = FIELDS


#: Dashes that NFKC leaves as they are, folded to ``-`` in the identity: hyphen (U+2010),
#: non-breaking hyphen, figure dash, en dash, em dash, horizontal bar (U+2015), hyphen
#: bullet (U+2043), minus sign (U+2212), box drawings light and heavy horizontal (U+2500,
#: U+2501: an IME's "けいせん" often stands for a dash in an address). NFKC already makes
#: the full-width hyphen-minus (U+FF0D) and the small one (U+FE63) ``-``.
_DASHES = re.compile("[\u2010-\u2015\u2043\u2212\u2500\u2501]")
#: The katakana long vowel mark (U+30FC, and the half-width U+FF70, which NFKC makes it)
#: between two digits: in an address it is a dash (千代田1ー1, typed in kana mode), where
#: elsewhere it is the long vowel of a word (センター, コーポ) and is kept.
_DIGIT_CHOON = re.compile("(?<=[0-9])\u30FC(?=[0-9])")
_SPACES = re.compile(r"\s+")
#: The fields that hold a place (where ー between digits is a dash, white space is dropped and
#: the block numbers are folded, :func:`identity_text`); in the names and the kana ー is the
#: long vowel and is never folded.
_PLACE_FIELDS = frozenset({"address", "prefecture", "municipality"})
#: The kanji numerals a block number is written in: 〇 to 九, 十, 百, 千, and the old-style
#: (大字, daiji) 壱 弐 参 拾 (壹 貳 參), as one, two, three and ten (:data:`_DAIJI`). 万 and 萬
#: are not among them: a place name may end in 万 right before a block number (群馬県中之条町
#: 大字四万, 金沢市四十万), where 四万四千二百二十八番地 would read as 44228 (it stays 四万4228).
_NUMERALS = "〇一二三四五六七八九十百千壱弐参拾壹貳參"
#: The old-style numerals as the ordinary ones they stand for.
_DAIJI = str.maketrans("壱弐参拾壹貳參", "一二三十一二三")
#: The block units a number in an address counts (丁目, 番地, 番, 号; Hokkaido's 条 and 線,
#: Iwate's 地割): a run of kanji numerals right before one is a number, where elsewhere it is
#: part of a place name (四日市, 一宮, 八丁堀, 十日町, 参宮橋, 壱岐) and is kept.
_KANJI_NUMBER = re.compile(f"(?<![{_NUMERALS}])([{_NUMERALS}]+)(?=丁目|番地|番|号|条|線|地割)")
_KANJI_DIGIT = {c: str(i) for i, c in enumerate("〇一二三四五六七八九")}
#: A kanji numeral with multipliers (二十三, 十, 百五, 千二百): digits 一 to 九, each at
#: most once before 千, 百, 十, in that order; 〇 is only positional (二〇 is 20).
_KANJI_COUNTED = re.compile("(?:([一二三四五六七八九])?千)?(?:([一二三四五六七八九])?百)?"
                            "(?:([一二三四五六七八九])?十)?([一二三四五六七八九])?")
#: A block unit (or の, 1の2) between two numbers: the hyphen of 2-1-2.
_BLOCK_JOIN = re.compile("(?<=[0-9])(?:丁目|番地の|番地|番の|番|の)(?=[0-9])")
#: A block unit after the last number of the address: at the end of the text, or before what
#: starts a building name written in katakana or Latin letters, or an opening bracket
#: (2-1-2号コーポ101, 1番地(梅田ビル)). Not before a kanji, a digit or a hiragana: 1番町,
#: 2号室, 3号棟, 1号館 keep theirs.
_BLOCK_END = re.compile("(?<=[0-9])(?:丁目|番地|番|号)(?=$|[\u30A1-\u30FAA-Za-z(])")
#: The numbers of the address once its block units between numbers are hyphens: a run of
#: digits, alone or with others joined by hyphens (2-01-003), taken whole (:func:`_unpadded`).
_NUMBER_CHAIN = re.compile("(?<![0-9])[0-9]+(?:-[0-9]+)*")
#: What makes a number alone a block number (:func:`_unpadded`): a block unit right after it,
#: 番 and 号 only where :data:`_BLOCK_END` drops them (at the end, before a katakana, a Latin
#: letter or ``(``), not before a kanji (1番町, 101号室, 2号棟, 1号館: a place's name, a room's
#: or a building's number).
_UNIT_AFTER = re.compile("丁目|番地|条|線|地割|[番号](?=$|[\u30A1-\u30FAA-Za-z(])")
#: The last letter of a building's name written in katakana (with its ー) or Latin letters: a
#: number right after it (or after it and a hyphen: コーポ101, コーポ1-01, A-01) is the
#: building's or a room's, not a block number.
_BUILDING_LETTER = re.compile("[\u30A1-\u30FA\u30FCA-Za-z]")
#: A postal code (郵便番号): three digits, a hyphen, four digits.
_POSTAL_CODE = re.compile("[0-9]{3}-[0-9]{4}")


def _kanji_number(match: re.Match) -> str:
    """A run of kanji numerals before a block unit in ASCII digits, an old-style numeral as
    the one it stands for (弐拾参 is 二十三, 壱 一, :data:`_DAIJI`): positional (一二 is 12,
    二〇 is 20, 〇一 is 01: digit for digit, as ASCII digits are, whose leading zeros
    :func:`_unpadded` drops) when it holds none of 十百千, else counted (二十三 is 23, 百五
    is 105); a run that is neither (十十, 千〇五, 拾拾) stays as it is."""
    given = match.group(1)
    run = given.translate(_DAIJI)
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


def _unpadded(match: re.Match) -> str:
    """A run of digits or a chain of them (:data:`_NUMBER_CHAIN`) without the leading zeros of
    its numbers (01 is 1, 00 is 0; 2-01-003 is 2-1-3) where they are block numbers: a chain of
    two or more, or one run right before a block unit (:data:`_UNIT_AFTER`: 01丁目, 〇一番地,
    北01条). Kept as it is: a postal code (right after 〒, or three digits, a hyphen and four
    digits at the start of the field: 〒100-0001, 100-0001東京都); a number right after a
    katakana or a Latin letter, or after one and a hyphen (:data:`_BUILDING_LETTER`: the
    building's, コーポ0101, コーポ1-01, A-01); and any other run alone (梅田ビル0201, 0101号室),
    whose zeros may be the number's own."""
    chain, text, start = match.group(0), match.string, match.start()
    before = text[start - 1:start]
    if before == "-":
        before = text[start - 2:start - 1]
    if text[start - 1:start] == "〒" or (start == 0 and _POSTAL_CODE.fullmatch(chain)):
        return chain
    if _BUILDING_LETTER.fullmatch(before) or ("-" not in chain and not _UNIT_AFTER.match(text, match.end())):
        return chain
    return "-".join(number.lstrip("0") or "0" for number in chain.split("-"))


def identity_text(field: str, value: str) -> str:
    """The form of a text field :func:`identity_of` compares: Unicode NFKC (full-width
    digits, Latin letters, hyphen-minus and space as ASCII, half-width katakana in full width,
    CJK compatibility ideographs as their unified ideograph), the dashes NFKC leaves apart
    folded to ``-`` (:data:`_DASHES`); in a name or its kana every run of white space one
    space, none around. Hiragana and katakana stay apart (the kana fields take either,
    ``protocols.cardsub``), as does ー in a name or its kana.

    A place field (:data:`_PLACE_FIELDS`) is an address written in one of the usual ways, so
    in it, in this order: white space is dropped (北区 1-1 is 北区1-1); a run of kanji numerals,
    the old-style 壱 弐 参 拾 (壹 貳 參) among them, right before a block unit 丁目, 番地, 番, 号,
    条, 線 or 地割 is its number in ASCII digits (:func:`_kanji_number`: 二丁目 and 弐丁目 are
    2丁目, 北一条 北1条; 四日市, 一宮, 八丁堀, 六本木, 参宮橋, 壱岐 stay; 万 is not a numeral
    here, :data:`_NUMERALS`); ー between two digits is ``-``; 丁目, 番地, 番, 番地の, 番の or の
    between two numbers is ``-`` (2丁目1番2号, 2丁目1-2, 1番地の2, 1の2 are 2-1-2, 2-1-2, 1-2,
    1-2); the block numbers lose their leading zeros (:func:`_unpadded`: 01丁目, 〇一丁目 are
    1丁目, 2-01-003 is 2-1-3; a postal code, 〒100-0001, a number right after a building's name
    in katakana or Latin letters, コーポ0101, コーポ1-01, and a number alone before no block
    unit, 0101号室, keep theirs); and 丁目, 番地, 番 or 号 after a number is dropped at the end
    of the text or before a katakana, a Latin letter or ``(`` (:data:`_BLOCK_END`: 2-1-2号 is
    2-1-2), kept before a kanji (2号室, 1番町: 一番町 is 1番町, typed either way; so 2-1-2号
    梅田ビル stays apart from 2-1-2 梅田ビル: the space that parted them is gone by then, and
    dropping 号 only before a space and a kanji would part 2-1-2号 梅田ビル from 2-1-2号梅田ビル,
    one person today). Then NFKC again (a combining mark a dropped space parted from its
    letter joins it). The form is its own form (applied twice, the same). So the same address
    typed otherwise is one person; a space that parted two numbers no longer does (1-1 201
    and 1-1201 are one address), which, compared with the names, birth date and sex, still
    names one person. Only the identity is compared so: the record keeps the text as given
    (revisions ``i0020addrnorm``, ``i0021blocknum`` recomputed the identities)."""
    text = _DASHES.sub("-", unicodedata.normalize("NFKC", value))
    if field not in _PLACE_FIELDS:
        return _SPACES.sub(" ", text).strip()
    text = _KANJI_NUMBER.sub(_kanji_number, _SPACES.sub("", text))
    text = _NUMBER_CHAIN.sub(_unpadded, _BLOCK_JOIN.sub("-", _DIGIT_CHOON.sub("-", text)))
    return unicodedata.normalize("NFKC", _BLOCK_END.sub("", text))


def identity_of(data: Mapping) -> str:
    """The ``holders.identity`` of a record (:func:`holder_data`'s, or a stored one): SHA-256
    hex of its :data:`IDENTITY_FIELDS`, each text in :func:`identity_text`'s form, in a
    canonical JSON: the same person typed with full-width digits, other dashes or spaces
    is the same identity. :class:`KeyError` for a record that lacks one."""
    import hashlib
    import json

    values = [_plain(data[k]) for k in IDENTITY_FIELDS]
    values = [identity_text(k, v) if isinstance(v, str) else v for k, v in zip(IDENTITY_FIELDS, values, strict=True)]
    values[IDENTITY_FIELDS.index("sex")] = int(values[IDENTITY_FIELDS.index("sex")])
    text = json.dumps(values, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _conflict(existing: Holder, data: Mapping) -> list[str]:
    """The fields a holder record gives that the registered record of the same person holds
    otherwise (the Roman-letter name): registering it would drop them silently."""
    return sorted(k for k in OPTIONAL if k in data and existing.data.get(k) != data[k])


def registered(sessions: sessionmaker[Session], holder, *,  # noqa: ANN001
               bind: Connection | None = None) -> str | None:
    """The id of the holder registered already as the person ``holder`` (a record without a
    card number, a holder file's) is, by :func:`identity_of`; None when nobody is.
    :class:`HolderError` when the registered record holds another Roman-letter name than the
    one given (``mcred holder update`` changes it). Read in ``bind``'s transaction if given,
    else in one of its own, committed (a read ending in ROLLBACK costs PostgreSQL's prepared
    statements: tests/test_db_roundtrips.py)."""
    data = holder_data(holder)
    if bind is not None:
        with Session(bind) as s:
            return _registered(s, data)
    with sessions.begin() as s:
        return _registered(s, data)


def _registered(s: Session, data: Mapping) -> str | None:
    """:func:`registered` in the caller's transaction, for :func:`holder_data`'s ``data``."""
    existing = s.scalar(select(Holder).where(Holder.identity == identity_of(data)))
    if existing is None:
        return None
    differ = _conflict(existing, data)
    if differ:
        raise HolderError(f"this person is registered as holder {existing.id}, with another {', '.join(differ)}: "
                          f"`mcred holder update {existing.id}` changes it, or name the holder by its id")
    return existing.id


def simulated_card_expiry(birth_date: dt.date, today: dt.date) -> dt.date:
    """The card's expiry when issued ``today`` (a date in Japan): the 10th birthday strictly
    after it, the 5th for a holder under 18 then (29 February: 28 February in a common year;
    ``protocols.birthdays``)."""
    return _card_expiry(birth_date, today)


def card_refusal(holder_id: str, card_expiry: dt.date, now: dt.datetime) -> str | None:
    """Why nothing can be issued from the holder's card at ``now``, or None. An expired
    card's functions are not issued (specs/card-substitute-doctype.md): a JPKI certificate
    runs at most through the card's last day (to 23:59:59 JST, specs/jpki-profile.md
    "Validity rule"), and an MSO the same (the mdoc record's end, ``issuer.mdoc.issuance``),
    so past the last day nothing is issued, and on it everything is. Read before an
    issuance starts, so that it is refused before anything is written or deleted rather
    than stopped half-way by the issuer. (An MSO ran to the start of the last day, so on
    that day no mdoc could be issued, and one issued the day before lost a day.)"""
    if card_expiry < today_in_japan(now):
        return (f"holder {holder_id}'s card expired on {card_expiry.isoformat()}: an expired card's "
                f"functions are not issued; the card is renewed (`mcred holder renew-card {holder_id}`)")
    return None


def register(sessions: sessionmaker[Session], holder, *, actor: str = "issuer",  # noqa: ANN001
             now: dt.datetime | None = None, phone_id: str | None = None) -> str:
    """The holder's id (existing for a known card number, else newly created); with
    ``phone_id``, that phone attached to the holder in the same transaction
    (:func:`attach_phone`), so that a phone taken by another holder meanwhile leaves no
    holder registered for nothing (:class:`HolderError`, nothing written)."""
    if phone_id is not None:
        check_phone_id(phone_id)
    data = holder_data(holder)
    now = now or utcnow()
    card_number = getattr(holder, "card_number", None) or (
        holder.get("card_number") if isinstance(holder, Mapping) else None)
    card_expiry = None
    for name in ("card_expiry", "card_expiry_date"):  # cardsub calls it card_expiry_date
        card_expiry = card_expiry or getattr(holder, name, None) or (
            holder.get(name) if isinstance(holder, Mapping) else None)
    if isinstance(card_expiry, str):
        card_expiry = dt.date.fromisoformat(card_expiry)
    # a record without a card (a holder file) is the person it names: registered again, the
    # same holder; with a card number, the card is who it is (below)
    identity = None if card_number else identity_of(data)
    if card_number:
        with sessions() as s:
            existing = s.scalar(select(Holder).where(Holder.card_number == str(card_number)))
        if existing is not None:
            if existing.data != data:
                raise HolderError(f"card {card_number} is registered to another holder record")
            if phone_id is not None:
                attach_phone(sessions, existing.id, phone_id, actor=actor)
            return existing.id
    card_number = str(card_number or "".join(secrets.choice("0123456789") for _ in range(16)))
    if card_expiry is None:
        card_expiry = simulated_card_expiry(dt.date.fromisoformat(data["birth_date"]),
                                            today_in_japan(now))
    try:
        with sessions.begin() as s:
            # the person registered already: that holder, looked up in the transaction that
            # would register them (no read transaction of its own on the usual path)
            known = _registered(s, data) if identity is not None else None
            if known is not None:
                if phone_id is not None:
                    _attach(s, known, phone_id, actor)
                return known
            row = Holder(data=data, card_number=card_number, card_expiry=card_expiry,
                         created_at=now, identity=identity)
            s.add(row)
            s.flush()
            s.add(AuditEvent(actor=actor, action="holder.register", subject=row.id,
                             detail={"card_number": card_number}))
            if phone_id is not None:
                _attach(s, row.id, phone_id, actor)
            return row.id
    except IntegrityError:
        if identity is not None:  # the same person, registered by another transaction meanwhile
            known = registered(sessions, holder)
            if known is not None:
                if phone_id is not None:
                    attach_phone(sessions, known, phone_id, actor=actor)
                return known
        if phone_id is not None:  # or the phone, first attached by another transaction meanwhile
            with sessions() as s:
                owner = s.scalar(select(Phone.holder_id).where(Phone.id == phone_id))
            if owner is not None:
                raise HolderError(f"phone {phone_id!r} belongs to holder {owner}") from None
        raise CardNumberTaken(f"card number {card_number} is already registered") from None


def _locked(s: Session, holder_id: str, if_erased: str | None = None) -> Holder:
    """The holder's row, locked for this transaction (PostgreSQL: FOR UPDATE);
    :class:`HolderError` for an unknown one, and for an erased one when ``if_erased`` says
    why that refuses the caller."""
    holder = s.get(Holder, holder_id, with_for_update=True) if isinstance(holder_id, str) else None
    if holder is None:
        raise HolderError(f"no holder {str(holder_id)[:40]!r} in the issuer's registry")
    if if_erased is not None and is_erased(holder.data):
        raise HolderError(f"holder {holder_id}'s personal data was erased: {if_erased}")
    return holder


#: What a change of the holder's record may touch (異動: a move, a change of name, a
#: correction); the card number and its expiry stay.
CHANGEABLE = (*FIELDS, *OPTIONAL)


def update(sessions: sessionmaker[Session], holder_id: str, changes: Mapping, *, actor: str,
           reason: str, then: Callable[[Session, list[str]], object] | None = None) -> list[str]:
    """Record a change of a holder's card data (a move, a change of name): ``changes`` maps
    fields of :data:`CHANGEABLE` to their new values (``None`` drops an optional one). The
    merged record is checked as a new holder's is (``protocols.cardsub.parse_holder``); a
    move to another municipality drops a ``municipality_code`` the change does not give
    again. Returns the names of the fields that changed (empty: nothing did, nothing is
    written); audited (``holder.update``, the field names and ``reason``, never the values).
    :class:`HolderError` for an unknown or erased holder, an unknown field, a value the
    card data cannot hold or a ``municipality_code`` that is not 6 ASCII digits. The
    credentials issued from the old data are the caller's to re-issue (the
    ``basic_four_change`` workflow): ``then(session, fields)`` records that in
    the same transaction, when something changed, so that the change and what brings the
    credentials in line are written together or not at all."""
    from protocols.cardsub import errors as cardsub_errors
    from protocols.cardsub.holder import parse_holder

    unknown = sorted(str(k) for k in changes if k not in CHANGEABLE)
    if unknown:
        raise HolderError(f"cannot change {', '.join(unknown)}: one of {', '.join(CHANGEABLE)}")
    code = changes.get("municipality_code")
    if code not in (None, "") and not _MUNICIPALITY_CODE.fullmatch(str(code)):
        raise HolderError(f"municipality_code {str(code)[:20]!r} is not a 6-digit local government code")
    with sessions.begin() as s:
        holder = _locked(s, holder_id, "nothing to change")
        merged = dict(holder.data)
        for key, value in changes.items():
            if value is None or value == "":
                if key in FIELDS:
                    raise HolderError(f"{key} cannot be removed")
                merged.pop(key, None)
            else:
                merged[key] = value
        moved = any(merged.get(k) != holder.data.get(k) for k in ("prefecture", "municipality"))
        if moved and "municipality_code" not in changes:
            merged.pop("municipality_code", None)
        try:
            parsed = parse_holder({k: v for k, v in merged.items() if k != "municipality_code"})
        except cardsub_errors.HolderError as exc:
            raise HolderError(str(exc)) from None
        data = holder_data(parsed)
        if merged.get("municipality_code"):
            data["municipality_code"] = str(merged["municipality_code"])
        changed = sorted(k for k in set(data) | set(holder.data) if data.get(k) != holder.data.get(k))
        if not changed:
            return []
        if holder.identity is not None:  # who the record says the person is follows the record
            identity = identity_of(data)
            taken = s.scalar(select(Holder.id).where(Holder.identity == identity, Holder.id != holder_id))
            if taken is not None:
                raise HolderError(f"the changed record is holder {taken}'s: one person, one holder record")
            holder.identity = identity
        holder.data = data
        s.add(AuditEvent(actor=actor, action="holder.update", subject=holder_id,
                         detail={"fields": changed, "reason": reason[:200]}))
        if then is not None:
            then(s, changed)
    return changed


def renew_card(sessions: sessionmaker[Session], holder_id: str, *, actor: str, reason: str,
               card_number: str | None = None, card_expiry: dt.date | None = None,
               now: dt.datetime | None = None,
               then: Callable[[Session], object] | None = None) -> dict:
    """The holder received a new card (カードの更新): a new card number (16 digits; random
    when not given) and expiry (when not given, by rule: :func:`simulated_card_expiry` of today
    in Japan). Returns
    ``{"card_number", "card_expiry", "previous_card_number"}``; audited (``holder.renew_card``,
    both card numbers and ``reason``). The credentials issued from the old card are the
    caller's to re-issue (the ``renewal`` workflow, recorded by ``then(session)`` in the same
    transaction, as for :func:`update`). :class:`HolderError` for an unknown or
    erased holder, a card number that is not 16 digits or is taken, an expiry not after
    today."""
    now = now or utcnow()
    if card_number is not None and not re.fullmatch(r"[0-9]{16}", str(card_number)):
        raise HolderError(f"a card number is 16 digits, not {str(card_number)[:40]!r}")
    number = str(card_number) if card_number is not None else "".join(
        secrets.choice("0123456789") for _ in range(16))
    try:
        with sessions.begin() as s:
            holder = _locked(s, holder_id, "no card to renew")
            expiry = card_expiry or simulated_card_expiry(dt.date.fromisoformat(holder.data["birth_date"]),
                                                          today_in_japan(now))
            if expiry <= now.date():
                raise HolderError(f"a new card expires after today, not on {expiry.isoformat()}")
            previous = holder.card_number
            if number == previous:
                raise CardNumberTaken(f"card {number} is the holder's card already")
            holder.card_number, holder.card_expiry = number, expiry
            s.add(AuditEvent(actor=actor, action="holder.renew_card", subject=holder_id,
                             detail={"card_number": number, "previous_card_number": previous,
                                     "reason": reason[:200]}))
            s.flush()
            if then is not None:
                then(s)
    except IntegrityError:
        raise CardNumberTaken(f"card number {number} is already registered") from None
    return {"card_number": number, "card_expiry": expiry.isoformat(), "previous_card_number": previous}


def check_phone_id(phone_id: str) -> None:
    """Raise :class:`HolderError` unless ``phone_id`` matches :data:`PHONE_ID_PATTERN`
    (SQLite would keep a longer id, PostgreSQL refuses it)."""
    if not isinstance(phone_id, str) or not _PHONE_ID.match(phone_id):
        raise HolderError(f"phone id {str(phone_id)[:80]!r}: use 1 to 63 lower-case letters, digits and "
                          "hyphens, not starting with a hyphen")


def attach_phone(sessions: sessionmaker[Session], holder_id: str, phone_id: str, *,
                 actor: str = "issuer") -> None:
    """Record that ``phone_id`` carries the holder's credentials (idempotent). A phone let go
    of its holder (an abandoned provisioning: ``mcred.provision.abandon``) is taken again."""
    check_phone_id(phone_id)
    with sessions.begin() as s:
        _attach(s, holder_id, phone_id, actor)


def _attach(s: Session, holder_id: str, phone_id: str, actor: str) -> None:
    """:func:`attach_phone` in the caller's transaction (the phone's row locked)."""
    phone = s.get(Phone, phone_id, with_for_update=True)
    if phone is None:
        s.add(Phone(id=phone_id, holder_id=holder_id, state="active"))
        s.add(AuditEvent(actor=actor, action="phone.attach", subject=phone_id,
                         detail={"holder": holder_id}))
    elif phone.holder_id is None:
        phone.holder_id, phone.state = holder_id, "active"
        s.add(AuditEvent(actor=actor, action="phone.attach", subject=phone_id,
                         detail={"holder": holder_id, "again": True}))
    elif phone.holder_id != holder_id:
        raise HolderError(f"phone {phone_id!r} belongs to holder {phone.holder_id}")


def summaries(sessions: sessionmaker[Session], holder_id: str | None = None, *,
              with_data: bool = False, card_number: str | None = None, limit: int | None = None,
              offset: int = 0) -> list[dict]:
    """Registered holders, oldest first (or the one ``holder_id``, or the one holding
    ``card_number``; none when unknown), ``limit`` of them from ``offset``: id, name, card
    number and expiry, the phones attached to them with their states, their credentials
    counted by ``kind:status`` and how many are live (valid or on hold); ``with_data`` adds
    the registered card-substitute data. One read transaction."""
    return list(each_summary(sessions, holder_id, with_data=with_data, card_number=card_number, limit=limit,
                             offset=offset))


#: Holders summarised at a time (:func:`each_summary`): their phones and credential counts are
#: asked for by their ids, one bound parameter each
BATCH = 500


def each_summary(sessions: sessionmaker[Session], holder_id: str | None = None, *,
                 with_data: bool = False, card_number: str | None = None, limit: int | None = None,
                 offset: int = 0) -> Iterator[dict]:
    """:func:`summaries`, read :data:`BATCH` holders at a time as they are consumed (each
    batch after the first from where the last ended, on ``ix_holder_created``), in one read
    transaction: a listing of every holder of a large installation neither holds them all
    nor asks for the phones of 20,000 holders in one statement of 20,000 parameters."""
    q = select(Holder).order_by(Holder.created_at, Holder.id)
    if holder_id is not None:
        q = q.where(Holder.id == holder_id)
    if card_number is not None:
        q = q.where(Holder.card_number == card_number)
    with sessions() as s, s.begin():
        page = q.offset(offset)
        while limit is None or limit > 0:
            size = BATCH if limit is None else min(BATCH, limit)
            holders = list(s.scalars(page.limit(size)))
            yield from _summarised(s, holders, with_data)
            if len(holders) < size:
                return
            if limit is not None:
                limit -= size
            last = holders[-1]
            page = q.where(tuple_(Holder.created_at, Holder.id) > tuple_(
                literal(last.created_at, Holder.created_at.type), literal(last.id, Holder.id.type)))
            s.expunge_all()


def _summarised(s: Session, holders: list[Holder], with_data: bool) -> Iterator[dict]:
    ids = [h.id for h in holders]
    phones: dict[str, list[dict]] = {}
    for p in s.scalars(select(Phone).where(Phone.holder_id.in_(ids)).order_by(Phone.created_at, Phone.id)):
        phones.setdefault(p.holder_id, []).append({"id": p.id, "state": p.state})
    counts: dict[str, dict[str, int]] = {}
    for hid, kind, status, n in s.execute(
            select(Credential.holder_id, Credential.kind, Credential.status, func.count())
            .where(Credential.holder_id.in_(ids))
            .group_by(Credential.holder_id, Credential.kind, Credential.status)):
        counts.setdefault(hid, {})[f"{kind}:{status}"] = n
    for h in holders:
        c = counts.get(h.id, {})
        row = {"id": h.id, "name": display_name(h.data), "erased": is_erased(h.data),
               "card_number": h.card_number, "card_expiry": h.card_expiry.isoformat(),
               "registered_at": h.created_at.isoformat(), "phones": phones.get(h.id, []),
               "credentials": dict(sorted(c.items())),
               "live": sum(n for k, n in c.items() if k.endswith((":valid", ":hold")))}
        if with_data:
            row["data"] = {k: v for k, v in h.data.items() if k != "portrait"}
            row["signing_certificate_from"] = _signing_from(h.data)
            row["renewal_needed"] = _renewals_needed(s, phones.get(h.id, []))
            row["sign_issue_needed"] = _sign_issues_needed(s, phones.get(h.id, []))
        yield row


def display_name(data: Mapping) -> str:
    """A holder's name as listings show it: family then given name, or "(erased)"."""
    if is_erased(data):
        return "(erased)"
    return f"{data.get('family_name', '')} {data.get('given_name', '')}".strip()


def phone_summaries(sessions: sessionmaker[Session], phone_ids: Sequence[str]) -> dict[str, dict]:
    """The issuer's view of the phones ``phone_ids`` (those it knows; ``mcred phone list
    --long``): each one's state, holder (id and name, "(erased)" for an erased one) and its
    credentials counted by ``kind:status`` with how many are live (valid or on hold), and
    the JPKI slots an abandoned renewal left to renew (``renewal_needed``, empty for none), and
    whether an abandoned ``issue-sign`` left it without a signing certificate to issue again
    (``sign_issue_needed``). A phone the issuer never provisioned is not in the
    answer. One read transaction, the ids asked for :data:`BATCH` at a time."""
    from issuer.revocation import renewals_needed, sign_issues_needed

    out: dict[str, dict] = {}
    ids = list(dict.fromkeys(phone_ids))
    with sessions() as s, s.begin():
        for i in range(0, len(ids), BATCH):
            part = ids[i:i + BATCH]
            for p, data in s.execute(select(Phone, Holder.data).outerjoin(Holder, Holder.id == Phone.holder_id)
                                     .where(Phone.id.in_(part))):
                out[p.id] = {"state": p.state, "holder": p.holder_id,
                             "holder_name": None if data is None else display_name(data),
                             "registered_at": p.created_at.isoformat(), "credentials": {}, "live": 0,
                             "renewal_needed": [], "sign_issue_needed": False}
            for pid, kind, status, n in s.execute(
                    select(Credential.phone_id, Credential.kind, Credential.status, func.count())
                    .where(Credential.phone_id.in_(part))
                    .group_by(Credential.phone_id, Credential.kind, Credential.status)):
                row = out[pid]
                row["credentials"][f"{kind}:{status}"] = n
                if status in ("valid", "hold"):
                    row["live"] += n
            for pid, slots in renewals_needed(s, part).items():
                out[pid]["renewal_needed"] = sorted(slots)
            for pid in sign_issues_needed(s, part):
                out[pid]["sign_issue_needed"] = True
    for row in out.values():
        row["credentials"] = dict(sorted(row["credentials"].items()))
    return out


def _renewals_needed(s: Session, phones: list[dict]) -> list[dict]:
    """The holder's phones' JPKI slots an abandoned renewal left without a usable certificate
    (:func:`issuer.revocation.renewals_needed`): ``{"phone", "slot", "job"}`` each."""
    from issuer.revocation import renewals_needed

    needed = renewals_needed(s, [p["id"] for p in phones])
    return [{"phone": phone, "slot": slot, "job": job}
            for phone, slots in sorted(needed.items()) for slot, job in sorted(slots.items())]


def _sign_issues_needed(s: Session, phones: list[dict]) -> list[dict]:
    """The holder's phones an abandoned ``issue-sign`` job left without a signing certificate
    (:func:`issuer.revocation.sign_issues_needed`): ``{"phone", "job"}`` each."""
    from issuer.revocation import sign_issues_needed

    return [{"phone": phone, "job": job}
            for phone, job in sorted(sign_issues_needed(s, [p["id"] for p in phones]).items())]


def _signing_from(data: Mapping) -> str | None:
    """The first day the holder may be issued a signing certificate (their 15th birthday:
    ``protocols.jpki.eligibility``), or None when the birth date is not known (erased)."""
    from protocols.jpki.eligibility import signing_eligible_from

    try:
        return signing_eligible_from(dt.date.fromisoformat(data["birth_date"])).isoformat()
    except (KeyError, TypeError, ValueError):
        return None


# -- erasure ---------------------------------------------------------------------------------------

#: The registered data of a holder whose personal data was erased (:func:`forget`).
ERASED = {"erased": True}


class HolderBusyError(HolderError):
    """The holder still has live credentials (valid or on hold): erasing what they derive
    from would leave credentials nobody can renew, hand over or answer for."""


def is_erased(data: Mapping) -> bool:
    return bool(data.get("erased"))


#: the audit details that name a holder's card: what a registration, a new card and each
#: JPKI issuance recorded (the audit keeps who did what, the card number is the holder's)
_CARD_DETAILS = {"holder.register": ("card_number",), "holder.renew_card": ("card_number", "previous_card_number"),
                 "jpki.issue": ("card_number",)}


def _redact_card_numbers(s: Session, holder_id: str) -> int:
    """Replace the holder's card numbers in the audit's details with ``erased`` (the events
    stay: who registered, renewed, issued, when); how many events changed."""
    credentials = select(Credential.id).where(Credential.holder_id == holder_id)
    # the holder's events and their credentials', each off the subject index (as one ORed
    # condition PostgreSQL read the whole audit; the action is only a filter: on
    # ix_issuer_audit_action SQLite walked every jpki.issue of the installation)
    events = [*s.scalars(select(AuditEvent).where(
                  AuditEvent.subject == holder_id,
                  unindexed(AuditEvent.action).in_(("holder.register", "holder.renew_card")))),
              *s.scalars(select(AuditEvent).where(
                  AuditEvent.subject.in_(credentials), unindexed(AuditEvent.action) == "jpki.issue"))]
    changed = 0
    for event in events:
        detail = dict(event.detail or {})
        keys = [k for k in _CARD_DETAILS[event.action] if detail.get(k) not in (None, "erased")]
        if keys:
            event.detail = {**detail, **dict.fromkeys(keys, "erased")}
            changed += 1
    return changed


def forget(sessions: sessionmaker[Session], holder_id: str, *, actor: str, reason: str) -> dict | None:
    """Erase a holder's personal data once none of their credentials is live (APPI: personal
    data kept no longer than its purpose needs): the registered card data (names, kana,
    address, birth date, sex, municipality) and the card number are replaced, and the
    IssuerSigned kept for each of their mdocs (which carries the same data and the portrait)
    is dropped. Their JPKI certificates stay: they are the certification authority's register
    of what it issued, which the CRLs and OCSP answer for (the signing certificate carries the
    basic four data; J-LIS keeps its register for the period the law sets). The holder's id,
    phones and credential records (status, serials, status-list slots) stay, so the trails
    still read; the audit's events stay too, their card numbers erased. Audited
    (``holder.forget``, with ``reason``). Returns what was done, or None when the holder was
    erased already; :class:`HolderError` for an unknown holder,
    :class:`HolderBusyError` while a credential is live."""
    with sessions.begin() as s:
        holder = _locked(s, holder_id)
        if is_erased(holder.data):
            return None
        live = s.scalar(select(func.count()).select_from(Credential).where(
            Credential.holder_id == holder_id, Credential.status.in_(("valid", "hold"))))
        if live:
            raise HolderBusyError(f"holder {holder_id} has {live} live credential(s): revoke them first "
                                  "(mcred revoke --phone ID --reason ...), then erase")
        mdocs = list(s.scalars(select(Credential).where(Credential.holder_id == holder_id,
                                                        Credential.kind == "mdoc", Credential.body != b"")))
        for c in mdocs:
            c.body, c.meta = b"", {**(c.meta or {}), "body_erased": True}
        certificates = s.scalar(select(func.count()).select_from(Credential).where(
            Credential.holder_id == holder_id, Credential.kind != "mdoc"))
        holder.data = {**ERASED, "erased_at": utcnow().isoformat()}
        holder.card_number = f"erased-{holder.id[:25]}"
        holder.identity = None  # derived from the data: erased with it
        done = {"holder": holder_id, "mdoc_bodies_erased": len(mdocs), "certificates_kept": certificates,
                "audit_details_redacted": _redact_card_numbers(s, holder_id)}
        s.add(AuditEvent(actor=actor, action="holder.forget", subject=holder_id,
                         detail={**done, "reason": reason[:200]}))
    return done
