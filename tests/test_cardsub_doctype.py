"""The card-substitute doctype: the spec's table and the issued elements agree; the holder
parser refuses bad fields by name."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import cbor
from protocols.cardsub import (
    DEFAULT_NAMES,
    ISO_NAMESPACE,
    DocNames,
    ElementError,
    HolderError,
    age_on,
    build_namespaces,
    card_expiry,
    parse_holder,
)

SPEC = Path(__file__).resolve().parents[1] / "specs" / "card-substitute-doctype.md"
JPEG = b"\xff\xd8\xff\xe0" + bytes(60) + b"\xff\xd9"
NOW = dt.datetime(2025, 6, 1, 3, tzinfo=dt.UTC)
HOLDER = {
    "family_name": "山田", "given_name": "花子", "family_name_kana": "ヤマダ",
    "given_name_kana": "ハナコ", "birth_date": "2006-06-01", "sex": 2,
    "address": "東京都千代田区霞が関1-1", "prefecture": "東京都", "municipality": "千代田区",
}
FULL = {**HOLDER, "portrait": "face.jpg", "family_name_roman": "YAMADA",
        "given_name_roman": "HANAKO", "pin": "1234", "password": "ABC123def"}


def spec_rows():
    """(namespace, identifier, cbor type, presence) of every row of the Elements table."""
    text = SPEC.read_text(encoding="utf-8")
    section = text.split("## Elements", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0] not in ("namespace",) and not set(cells[0]) <= {"-"}:
            rows.append(tuple(cells[:4]))
    return rows


def cbor_type(value) -> str:
    """The CDDL type of a value as protocols.cbor writes it."""
    encoded = cbor.loads(cbor.dumps(value))
    if isinstance(encoded, bool):
        return "bool"
    if isinstance(encoded, int) and encoded >= 0:
        return "uint"
    if isinstance(encoded, str):
        return "tstr"
    if isinstance(encoded, bytes):
        return "bstr"
    if isinstance(encoded, dt.date) and not isinstance(encoded, dt.datetime):
        assert cbor.dumps(value)[:3] == b"\xd9\x03\xec"  # tag 1004
        return "full-date"
    return type(encoded).__name__


def build(holder=FULL, portrait=JPEG, **kw):
    args = dict(issue_date=dt.date(2025, 6, 1), expiry_date=dt.date(2030, 6, 1),
                document_number="CS-0001-ABCD", now=NOW)
    args.update(kw)
    return build_namespaces(parse_holder(holder), portrait, **args)


def test_spec_names_the_default_doctype():
    text = SPEC.read_text(encoding="utf-8")
    assert f"| docType | `{DEFAULT_NAMES.doctype}` |" in text
    assert f"| namespace | `{DEFAULT_NAMES.namespace}` |" in text
    assert "not official Digital Agency identifiers" in text


def test_issued_elements_agree_with_the_spec_table():
    rows = spec_rows()
    assert len(rows) > 20
    full, minimal = build(), build(HOLDER, None)
    table = {(ns, ident): (typ, presence) for ns, ident, typ, presence in rows}
    issued = {(ns, ident) for ns, elements in full.items() for ident in elements}
    assert issued == set(table), issued ^ set(table)
    for (ns, ident), (typ, presence) in table.items():
        assert cbor_type(full[ns][ident]) == typ, (ns, ident)
        assert (ident in minimal[ns]) == (presence == "M"), (ns, ident, presence)


def test_values_and_mirrors():
    ns = build()
    ours, iso = ns[DEFAULT_NAMES.namespace], ns[ISO_NAMESPACE]
    assert ours["family_name"] == "山田" and iso["family_name"] == "YAMADA"
    assert iso["family_name_national_character"] == "山田"
    assert ours["birth_date"] == iso["birth_date"] == dt.date(2006, 6, 1)
    assert ours["age_over_18"] is True and ours["age_over_20"] is False  # 19th birthday in JST
    assert iso["portrait"] == JPEG and iso["issuing_country"] == "JP"
    assert ours["issuing_municipality"] == "東京都千代田区"
    assert ours["card_expiry_date"] == dt.date(2035, 6, 1)  # 10th birthday after issue
    born_2005 = {**FULL, "birth_date": "2005-06-01"}
    assert build(born_2005)[ISO_NAMESPACE]["age_over_20"] is True  # 20th birthday, 12:00 JST
    eve = build(born_2005, now=dt.datetime(2025, 5, 31, 14, 59, tzinfo=dt.UTC))  # 23:59 JST
    assert eve[ISO_NAMESPACE]["age_over_20"] is False
    custom = build(names=DocNames("x.doc", "x.ns"), age_thresholds=(16, 18, 20, 65))
    assert set(custom) == {"x.ns", ISO_NAMESPACE} and custom["x.ns"]["age_over_16"] is True


def test_further_age_thresholds_come_beside_the_mandatory_18_and_20():
    """The spec makes age_over_18 and age_over_20 mandatory ("always issued") and further NN
    configurable; age_thresholds=(65,) issued age_over_65 alone, so a reader asking the
    mandatory age_over_18 of such an mdoc found no element."""
    ns = build(age_thresholds=(65,))
    for space in (DEFAULT_NAMES.namespace, ISO_NAMESPACE):
        ages = sorted(k for k in ns[space] if k.startswith("age_over_"))
        assert ages == ["age_over_18", "age_over_20", "age_over_65"], (space, ages)
        assert ns[space]["age_over_18"] is True and ns[space]["age_over_65"] is False


def test_element_rules():
    with pytest.raises(ElementError, match="My Number"):
        build(document_number="123456789012")
    with pytest.raises(ElementError, match="JPEG"):
        build(portrait=b"\x89PNG....")
    with pytest.raises(ElementError, match="expiry"):
        build(expiry_date=dt.date(2025, 1, 1))


def test_ages_and_card_expiry_rules():
    leap = dt.date(2004, 2, 29)
    assert age_on(leap, dt.date(2022, 2, 28)) == 17
    assert age_on(leap, dt.date(2022, 3, 1)) == 18
    # the 10th (under 18: 5th) birthday after the issue date; 2025-07-10 is the 1st
    assert card_expiry(dt.date(1990, 7, 10), dt.date(2025, 6, 1)) == dt.date(2034, 7, 10)
    assert card_expiry(dt.date(2015, 7, 10), dt.date(2025, 6, 1)) == dt.date(2029, 7, 10)


@pytest.mark.parametrize("change, field", [
    ({"familyname": "x"}, "familyname"),
    ({"birthdate": "2000-01-01"}, "birthdate"),
    ({"sex": "2"}, "sex"),
    ({"sex": True}, "sex"),
    ({"sex": 3}, "sex"),
    ({"birth_date": "2000/01/01"}, "birth_date"),
    ({"birth_date": "2001-02-29"}, "birth_date"),
    ({"family_name_kana": "yamada"}, "family_name_kana"),
    ({"address": 12}, "address"),
    ({"given_name": ""}, "given_name"),
    ({"pin": "12345"}, "pin"),
    ({"pin": 1234}, "pin"),
    ({"password": "abc"}, "password"),
    ({"puk": "1234567"}, "puk"),
    ({"puk": "1234567a"}, "puk"),
    ({"puk": 12345678}, "puk"),
    ({"family_name_roman": "YAMADA"}, "given_name_roman"),
    ({"family_name_roman": "山田", "given_name_roman": "HANAKO"}, "family_name_roman"),
])
def test_holder_refuses_bad_fields_by_name(change, field):
    with pytest.raises(HolderError) as info:
        parse_holder({**HOLDER, **change})
    assert info.value.field == field and repr(field) in str(info.value)


@pytest.mark.parametrize("birth, why", [
    ("2999-01-01", "is in the future"),
    ("2025-06-02", "is in the future"),  # tomorrow
    ("0001-01-01", "is before 1900-01-01"),
    ("1899-12-31", "is before 1900-01-01"),
])
def test_a_birth_date_nobody_living_has_is_refused_naming_it(birth, why):
    """2999-01-01 passed, registered the holder and stopped the TSM job at issue-sign-cert
    (the JPKI issuer refuses a birth after the day of issue; 0001 has no 4-digit year)."""
    with pytest.raises(HolderError, match=why) as info:
        parse_holder({**HOLDER, "birth_date": birth}, today=dt.date(2025, 6, 1))
    assert info.value.field == "birth_date"


def test_the_bounds_of_a_birth_date_and_of_a_card_expiry_are_their_own():
    today = dt.date(2025, 6, 1)
    for birth in ("1900-01-01", "2025-06-01"):  # the earliest, and born today (JST)
        assert parse_holder({**HOLDER, "birth_date": birth}, today=today).birth_date == dt.date.fromisoformat(birth)
    assert parse_holder({**HOLDER, "card_expiry_date": "2025-06-01"}, today=today).card_expiry_date == today
    with pytest.raises(HolderError, match="has passed") as info:  # the issuer could only refuse it
        parse_holder({**HOLDER, "card_expiry_date": "2025-05-31"}, today=today)
    assert info.value.field == "card_expiry_date"


def test_today_is_the_day_in_japan_the_issuer_counts_from():
    from protocols.cardsub.holder import today_in_japan
    from protocols.jpki.validity import JST

    assert today_in_japan() == dt.datetime.now(JST).date()
    with pytest.raises(HolderError, match="is in the future"):
        parse_holder({**HOLDER, "birth_date": (today_in_japan() + dt.timedelta(days=1)).isoformat()})


@pytest.mark.parametrize("missing", ["family_name", "sex", "municipality", "birth_date"])
def test_holder_refuses_missing_field(missing):
    data = {k: v for k, v in HOLDER.items() if k != missing}
    with pytest.raises(HolderError, match=f"'{missing}': missing"):
        parse_holder(data)


def test_the_secrets_a_holder_file_may_carry_are_taken_and_kept_out_of_repr():
    holder = parse_holder({**HOLDER, "pin": "1234", "password": "ABC123", "puk": " 87654321\n"})
    assert (holder.pin, holder.password, holder.puk) == ("1234", "ABC123", "87654321")
    assert not {"1234", "ABC123", "87654321"} & set(re.findall(r"[0-9A-Z]+", repr(holder)))


def test_an_unknown_field_is_named_with_the_fields_a_holder_has():
    with pytest.raises(HolderError) as info:
        parse_holder({**HOLDER, "pukk": "87654321"})
    assert info.value.field == "pukk"
    assert "did you mean 'puk'" in str(info.value)
    assert "a holder has family_name, given_name" in str(info.value) and ", pin, password, puk" in str(info.value)


def test_misspelt_field_gets_a_suggestion():
    with pytest.raises(HolderError, match="did you mean 'family_name_kana'"):
        parse_holder({**HOLDER, "family_name_kanna": "ヤマダ"})


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(list(HOLDER) + ["pin", "portrait", "x"]),
                       st.one_of(st.text(max_size=12), st.integers(-2, 12), st.none(),
                                 st.booleans(), st.lists(st.integers(), max_size=2))))
def test_fuzzed_holder_gives_holder_error_or_holder(data):
    merged = {**HOLDER, **data}
    try:
        parse_holder(merged)
    except HolderError as exc:
        assert exc.field in merged or exc.field in HOLDER or exc.field.endswith("_roman")


def test_text_is_composed_and_half_width_kana_made_full_width():
    """A holder file written on macOS carries decomposed kana (ダ as タ + U+3099); a
    half-width reading (ﾔﾏﾀﾞ) is the same reading. Both are issued as the card writes them,
    so a reader comparing names sees one name, not two."""
    import unicodedata

    nfd = lambda s: unicodedata.normalize("NFD", s)  # noqa: E731
    holder = parse_holder({**HOLDER, "family_name": nfd("山田ガ"), "family_name_kana": nfd("ヤマダ"),
                           "given_name_kana": "ﾊﾅｺ", "address": nfd("東京都千代田区霞が関")})
    assert holder.family_name == "山田ガ" and holder.family_name_kana == "ヤマダ"
    assert holder.given_name_kana == "ハナコ" and holder.address == "東京都千代田区霞が関"
    for text in (holder.family_name, holder.family_name_kana, holder.given_name_kana, holder.address):
        assert unicodedata.is_normalized("NFC", text)


def test_a_compatibility_ideograph_in_a_name_is_kept_as_registered():
    """U+FA19 (神, a registered variant) would become U+795E under NFC: the name keeps it."""
    holder = parse_holder({**HOLDER, "family_name": "\ufa19田", "given_name": "\U0002f81a" + "子"})
    assert holder.family_name == "\ufa19田" and holder.given_name == "\U0002f81a子"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=20))
def test_normalized_text_is_stable_and_nfc_outside_compatibility_ideographs(text):
    import re
    import unicodedata

    from protocols.cardsub.holder import normalize_text

    once = normalize_text(text)
    assert normalize_text(once) == once
    if not re.search("[\uf900-\ufaff\U0002f800-\U0002fa1f]", text):
        assert once == unicodedata.normalize("NFC", text)


@pytest.mark.parametrize(("field", "longest", "why"), [
    ("prefecture", "県" * 32, "longer than 32 characters"),
    ("municipality", "市" * 19, "longer than 58 bytes of UTF-8"),
    ("municipality", "m" * 58, "longer than 58 bytes of UTF-8"),
])
def test_prefecture_and_municipality_are_refused_at_the_door_beyond_what_can_be_issued(field, longest, why):
    """They end up in the JPKI CRL distribution point name (CN "<municipality> CRLDP": 64
    bytes at most) and in the registry's partition row; a longer value used to pass here and
    fail later, at issuance or, on PostgreSQL, as a DataError."""
    assert getattr(parse_holder({**HOLDER, field: longest}), field) == longest
    with pytest.raises(HolderError, match=why) as err:
        parse_holder({**HOLDER, field: longest + longest[0]})
    assert err.value.field == field


@pytest.mark.parametrize(("text", "what"), [
    ("山\x00田", "a control character, U+0000, at position 2"),
    ("山\n田", "a control character, U+000A, at position 2"),
    ("山\x7f田", "a control character, U+007F"),
    ("山\x85田", "a control character, U+0085"),
    ("山\ud800田", "a lone surrogate, U+D800"),
    ("山\u2028田", "a line separator, U+2028"),
    ("山\u2029田", "a paragraph separator, U+2029"),
])
def test_a_text_holding_what_no_name_or_address_holds_is_refused_naming_it(text, what):
    """NUL was issued, and on PostgreSQL refused by the database after the request was
    taken (a 500); a lone surrogate (JSON's ``\\ud800``) cannot be encoded in CBOR at all."""
    for field in ("family_name", "address", "municipality"):
        with pytest.raises(HolderError, match=f"{field}.*holds {re.escape(what)}"):
            parse_holder({**HOLDER, field: text})
    assert parse_holder({**HOLDER, "family_name": " 山田\n"}).family_name == "山田"  # trimmed, as before
