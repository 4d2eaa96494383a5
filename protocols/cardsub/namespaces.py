"""The card-substitute record as mdoc data elements (``specs/card-substitute-doctype.md``).

The docType and namespace are **project-defined** (``jp.mcred.mynumber.cardsub.1``): they
are not identifiers of the Digital Agency, which has published none; :class:`DocNames`
makes them configurable. The ISO/IEC 18013-5 namespace ``org.iso.18013.5.1`` mirrors the
elements a generic reader asks for (name, birth date, portrait, age_over_NN, ...), with the
ISO rules: ISO ``family_name`` / ``given_name`` are Latin (filled from the Roman-letter
name only), the kanji go to ``*_national_character``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from protocols.birthdays import JST, age_on, card_expiry
from protocols.cardsub.errors import ElementError
from protocols.cardsub.holder import Holder

ISO_NAMESPACE = "org.iso.18013.5.1"
DEFAULT_AGE_THRESHOLDS = (18, 20)
_MY_NUMBER = re.compile(r"^[0-9]{12}$")
#: The largest portrait (bytes of JPEG) the profile issues. An mdoc carries it twice (this
#: doctype's ``portrait`` and its ISO mirror) and the phone's SE takes an IssuerSigned in one
#: personalisation record (a DGI of at most 65535 bytes): with every other element at its
#: longest, a P-384 device key and the longest status URI the rest is about 9.9 KB, so at
#: most about 27.8 KB are left for each copy. 24 KiB keeps room for a longer DS chain;
#: ISO/IEC 18013-2 Annex D's 192 x 240 portrait is a few KB.
PORTRAIT_MAX = 24 * 1024
_DEFAULT_AGES = tuple((f"age_over_{n:02d}", n) for n in sorted(set(DEFAULT_AGE_THRESHOLDS)))


def check_portrait(portrait: bytes | None) -> None:
    """Raise :class:`ElementError` unless ``portrait`` is None or a JPEG of at most
    :data:`PORTRAIT_MAX` bytes."""
    if portrait is None:
        return
    if not portrait.startswith(b"\xff\xd8\xff"):
        raise ElementError("portrait is not a JPEG (no SOI marker FFD8FF)")
    if len(portrait) > PORTRAIT_MAX:
        raise ElementError(f"portrait is {len(portrait):,} bytes; at most {PORTRAIT_MAX:,} are issued "
                           "(the mdoc carries it twice and the SE takes an mdoc of at most 64 KiB)")


def check_age_thresholds(thresholds: Iterable[int]) -> tuple[int, ...]:
    """The NN of every ``age_over_NN`` an mdoc carries, sorted: 18 and 20, which are
    mandatory elements (specs/card-substitute-doctype.md), and ``thresholds`` beside them,
    never instead of them. Raises :class:`ElementError` naming a threshold that is not an
    integer of two digits (1 to 99: ISO/IEC 18013-5 7.2.5's NN)."""
    try:
        given = list(thresholds)
    except TypeError:
        raise ElementError(f"age thresholds: {type(thresholds).__name__} is not a collection of integers") from None
    for n in given:
        if type(n) is not int or not 0 < n < 100:
            raise ElementError(f"age threshold {n!r}: NN must be an integer of two digits, 1 to 99")
    return tuple(sorted({*DEFAULT_AGE_THRESHOLDS, *given}))


@dataclass(frozen=True)
class DocNames:
    """docType and namespace; the defaults are project-defined, NOT Digital Agency names."""

    doctype: str = "jp.mcred.mynumber.cardsub.1"
    namespace: str = "jp.mcred.mynumber.cardsub.1"


DEFAULT_NAMES = DocNames()


def build_namespaces(
    holder: Holder,
    portrait: bytes | None,
    *,
    issue_date: dt.date,
    expiry_date: dt.date,
    document_number: str,
    now: dt.datetime,
    names: DocNames = DEFAULT_NAMES,
    age_thresholds: Iterable[int] = DEFAULT_AGE_THRESHOLDS,
) -> dict[str, dict[str, Any]]:
    """``{namespace: {element identifier: value}}`` for one card-substitute mdoc.

    Dates are :class:`datetime.date` (``protocols.cbor.dumps`` writes them as full-date, tag
    1004); ``portrait`` is the JPEG the caller read from ``holder.portrait``. Ages are
    computed on the date of ``now`` in Japan.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ElementError(f"now must be an aware datetime, got naive {now!r}")
    if not isinstance(document_number, str) or not document_number:
        raise ElementError("document_number must be a non-empty string")
    if _MY_NUMBER.match(document_number):
        raise ElementError("document_number is 12 digits, shaped like a My Number: refused "
                           "(the record number is never the individual number)")
    if expiry_date < issue_date:  # a record runs through its expiry day: one issued on it holds
        raise ElementError(f"expiry_date {expiry_date} is before issue_date {issue_date}")
    check_portrait(portrait)
    today = now.astimezone(JST).date()
    age = age_on(holder.birth_date, today)
    if age_thresholds is DEFAULT_AGE_THRESHOLDS:  # names worked out once, below
        ages = {name: age >= n for name, n in _DEFAULT_AGES}
    else:
        ages = {f"age_over_{n:02d}": age >= n for n in check_age_thresholds(age_thresholds)}
    card_expiry_date = holder.card_expiry_date or card_expiry(holder.birth_date, issue_date)
    authority = f"{holder.prefecture}{holder.municipality}"

    ours: dict[str, Any] = {
        "family_name": holder.family_name,
        "given_name": holder.given_name,
        "family_name_kana": holder.family_name_kana,
        "given_name_kana": holder.given_name_kana,
        "birth_date": holder.birth_date,
        "sex": holder.sex,
        "resident_address": holder.address,
        "issuing_municipality": authority,
        "card_expiry_date": card_expiry_date,
        "issue_date": issue_date,
        "expiry_date": expiry_date,
        "document_number": document_number,
        **ages,
    }
    iso: dict[str, Any] = {
        "family_name_national_character": holder.family_name,
        "given_name_national_character": holder.given_name,
        "birth_date": holder.birth_date,
        "sex": holder.sex,
        "issue_date": issue_date,
        "expiry_date": expiry_date,
        "issuing_country": "JP",
        "issuing_authority": authority,
        "document_number": document_number,
        **ages,
    }
    if holder.family_name_roman is not None and holder.given_name_roman is not None:
        ours["family_name_roman"] = holder.family_name_roman
        ours["given_name_roman"] = holder.given_name_roman
        iso["family_name"] = holder.family_name_roman
        iso["given_name"] = holder.given_name_roman
    if portrait is not None:
        ours["portrait"] = bytes(portrait)
        iso["portrait"] = bytes(portrait)
    return {names.namespace: ours, ISO_NAMESPACE: iso}
