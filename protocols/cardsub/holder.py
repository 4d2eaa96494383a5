"""The holder record: what the issuer knows of a person, parsed once at the boundary.

Fields as issue 4 item 3 defines the holder JSON file, plus the optional Roman-letter
name of the next card (split into family and given so that it can fill the ISO
``family_name`` / ``given_name``) and an optional card expiry date. Unknown, missing or
ill-typed fields are refused with a :class:`HolderError` naming the field. Pure: the
caller reads the file and the portrait at ``portrait`` (a path, kept as text here).
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from protocols.cardsub.errors import HolderError
from protocols.jpki.validity import JST

SEX_CODES = {0: "not known", 1: "male", 2: "female", 9: "not applicable"}  # ISO/IEC 5218
_KANA = re.compile(r"^[\u3041-\u309F\u30A0-\u30FF\u31F0-\u31FF\uFF66-\uFF9F\u3000 ・ー]+$")
_ROMAN = re.compile(r"^[A-Za-z][A-Za-z .'\-]*$")
_PIN = re.compile(r"^[0-9]{4}$")
_PASSWORD = re.compile(r"^[A-Za-z0-9]{6,16}$")
_PUK = re.compile(r"^[0-9]{8}$")  # the JPKI applet's PUK (specs/jpki-applet.md section 3)
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


@dataclass(frozen=True)
class Holder:
    family_name: str
    given_name: str
    family_name_kana: str
    given_name_kana: str
    birth_date: dt.date
    sex: int
    address: str
    prefecture: str
    municipality: str
    portrait: str | None = None
    family_name_roman: str | None = None
    given_name_roman: str | None = None
    card_expiry_date: dt.date | None = None
    #: the JPKI secrets to set (each generated, and shown once, when not given): never in repr
    pin: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    puk: str | None = field(default=None, repr=False)


#: The earliest birth date a holder record may carry. The JPKI profile writes any date from
#: the year 1000 on (era digit 0 before Meiji, 1868-01-25), but no living person was born
#: before 1900: an earlier date is a typing error (0001-01-01, 1090 for 1990), refused at
#: the door rather than printed into a certificate. The latest is today in Japan (JST), the
#: day the JPKI issuer counts from: it refuses a birth date after the day of issue
#: (``protocols.jpki.validity.end_entity_validity``), which is never before the day the
#: record was parsed, so a holder accepted here is one the issuer can issue to.
EARLIEST_BIRTH_DATE = dt.date(1900, 1, 1)


def today_in_japan() -> dt.date:
    """The date in Japan now: the day of issue the JPKI and mdoc issuers count from."""
    return dt.datetime.now(JST).date()


_REQUIRED = ("family_name", "given_name", "family_name_kana", "given_name_kana", "birth_date",
             "sex", "address", "prefecture", "municipality")
_OPTIONAL = ("portrait", "family_name_roman", "given_name_roman", "card_expiry_date", "pin",
             "password", "puk")
FIELDS = _REQUIRED + _OPTIONAL


#: CJK compatibility ideographs (U+F900..U+FAFF, U+2F800..U+2FA1F): most have a singleton
#: canonical decomposition, so NFC would turn a registered variant such as U+FA19 into its
#: unified form U+795E, changing how the holder's name is written. They are kept as given.
_COMPAT_IDEOGRAPHS = re.compile("([\uF900-\uFAFF\U0002F800-\U0002FA1F]+)")


def normalize_text(value: str) -> str:
    """NFC, except for CJK compatibility ideographs (kept as given): a name typed or copied
    on macOS arrives decomposed (``ダ`` as ``タ`` + U+3099), and a reader comparing it with
    the composed form would see another name. The ideographs are starters that combine
    with nothing, so normalizing the runs between them is NFC everywhere else."""
    if value.isascii():
        return value
    parts = _COMPAT_IDEOGRAPHS.split(value)
    return "".join(p if i % 2 else unicodedata.normalize("NFC", p) for i, p in enumerate(parts))


def normalize_kana(value: str) -> str:
    """:func:`normalize_text`, and half-width katakana (``ﾔﾏﾀﾞ``) in full width (``ヤマダ``),
    as the card and the family register write the reading."""
    return unicodedata.normalize("NFKC", value) if _HALF_WIDTH_KANA.search(value) else normalize_text(value)


_HALF_WIDTH_KANA = re.compile("[\uFF61-\uFF9F]")


#: Longest text per field (characters). 150 by default; the prefecture (32) and the
#: municipality name the JPKI CRL partition, whose registry row keeps them and whose
#: distribution point name holds them in X.509 attributes (OU=<prefecture>,
#: CN="<municipality> CRLDP"; a CN is at most 64 bytes of UTF-8, so the municipality gets
#: :data:`MUNICIPALITY_MAX_UTF8` bytes: 19 kanji). The limits refuse at the door what could
#: not be issued later; real names are a few characters (神奈川県, いちき串木野市).
MAX_CHARS = {"prefecture": 32}
MUNICIPALITY_MAX_UTF8 = 64 - len(" CRLDP")


#: Unicode categories no holder text may hold: control characters (NUL among them, which
#: PostgreSQL refuses in any text), lone surrogates (no UTF-8 encodes them, so neither
#: CBOR nor the database can) and line or paragraph separators (every field is one line).
_REFUSED_CATEGORIES = {"Cc": "a control character", "Cs": "a lone surrogate",
                       "Zl": "a line separator", "Zp": "a paragraph separator"}


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise HolderError(name, f"must be a string, got {type(value).__name__}")
    value = value.strip()  # white space around the text (a line end too) is no part of it
    for i, ch in enumerate(value):
        what = _REFUSED_CATEGORIES.get(unicodedata.category(ch))
        if what:
            raise HolderError(name, f"holds {what}, U+{ord(ch):04X}, at position {i + 1}")
    value = normalize_text(value)
    if not value:
        raise HolderError(name, "must not be empty")
    limit = MAX_CHARS.get(name, 150)
    if len(value) > limit:
        raise HolderError(name, f"longer than {limit} characters")
    if name == "municipality" and len(value.encode()) > MUNICIPALITY_MAX_UTF8:
        raise HolderError(name, f"longer than {MUNICIPALITY_MAX_UTF8} bytes of UTF-8 "
                                f"({MUNICIPALITY_MAX_UTF8 // 3} kanji): it names the JPKI CRL partition")
    return value


def _date(name: str, value: Any) -> dt.date:
    text = _text(name, value)
    if not _DATE.match(text):
        raise HolderError(name, f"must be a date 'YYYY-MM-DD', got {text!r}")
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise HolderError(name, f"{text!r} is not a calendar date") from None


def _pattern(name: str, value: Any, pattern: re.Pattern, what: str) -> str:
    text = _text(name, value)
    if pattern is _KANA:
        text = normalize_kana(text)
    if not pattern.match(text):
        raise HolderError(name, f"must be {what}")
    return text


def parse_holder(data: Mapping[str, Any], *, today: dt.date | None = None) -> Holder:
    """A :class:`Holder` from the decoded holder JSON object. ``today``: the day of issue
    to check dates against (default :func:`today_in_japan`): the birth date lies between
    :data:`EARLIEST_BIRTH_DATE` and it, a card expiry date on or after it."""
    if not isinstance(data, Mapping):
        raise HolderError("<root>", f"the holder must be a JSON object, got {type(data).__name__}")
    for key in data:
        if key not in FIELDS:
            close = difflib.get_close_matches(str(key), FIELDS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise HolderError(str(key), f"unknown field{hint}; a holder has {', '.join(_REQUIRED)} and "
                                        f"optionally {', '.join(_OPTIONAL)}")
    for key in _REQUIRED:
        if key not in data:
            raise HolderError(key, "missing")
    sex = data["sex"]
    if type(sex) is not int or sex not in SEX_CODES:
        raise HolderError("sex", f"must be an ISO/IEC 5218 integer (0, 1, 2 or 9), got {sex!r}")
    birth_date = _date("birth_date", data["birth_date"])
    today = today or today_in_japan()
    if birth_date > today:
        raise HolderError("birth_date", f"{birth_date} is in the future (today is {today} in Japan): "
                                        "nothing can be issued to a person not yet born")
    if birth_date < EARLIEST_BIRTH_DATE:
        raise HolderError("birth_date", f"{birth_date} is before {EARLIEST_BIRTH_DATE}: no living "
                                        "person was born then (a typing error?)")
    values: dict[str, Any] = {
        "family_name": _text("family_name", data["family_name"]),
        "given_name": _text("given_name", data["given_name"]),
        "family_name_kana": _pattern("family_name_kana", data["family_name_kana"], _KANA, "kana"),
        "given_name_kana": _pattern("given_name_kana", data["given_name_kana"], _KANA, "kana"),
        "birth_date": birth_date,
        "sex": sex,
        "address": _text("address", data["address"]),
        "prefecture": _text("prefecture", data["prefecture"]),
        "municipality": _text("municipality", data["municipality"]),
    }
    optional = {
        "portrait": lambda v: _text("portrait", v),
        "family_name_roman": lambda v: _pattern("family_name_roman", v, _ROMAN, "Roman letters"),
        "given_name_roman": lambda v: _pattern("given_name_roman", v, _ROMAN, "Roman letters"),
        "card_expiry_date": lambda v: _date("card_expiry_date", v),
        "pin": lambda v: _pattern("pin", v, _PIN, "4 digits"),
        "password": lambda v: _pattern("password", v, _PASSWORD, "6 to 16 letters or digits"),
        "puk": lambda v: _pattern("puk", v, _PUK, "8 digits (the PUK that unblocks the PIN and the password)"),
    }
    for key, parse in optional.items():
        if data.get(key) is not None:
            values[key] = parse(data[key])
    if ("family_name_roman" in values) != ("given_name_roman" in values):
        missing = "given_name_roman" if "family_name_roman" in values else "family_name_roman"
        raise HolderError(missing, "the Roman-letter name needs both family and given name")
    if values.get("card_expiry_date") is not None and values["card_expiry_date"] <= birth_date:
        raise HolderError("card_expiry_date", "is not after the birth date")
    if values.get("card_expiry_date") is not None and values["card_expiry_date"] < today:
        raise HolderError("card_expiry_date", f"{values['card_expiry_date']} has passed (today is {today} in "
                                              "Japan): an expired card's functions are not issued")
    return Holder(**values)
