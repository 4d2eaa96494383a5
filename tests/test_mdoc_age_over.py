"""The nearest age_over_NN (ISO/IEC 18013-5:2021 7.2.5, protocols/mdoc/age_over.py): which
element a wallet returns for an age_over_NN it does not hold, and what a reader reads into
the element it gets. The property: whatever the birth date, the day, the thresholds issued
and the NN asked, the answer is never wrong about the NN asked."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.birthdays import JST, age_on
from protocols.cardsub import DEFAULT_NAMES, ISO_NAMESPACE, build_namespaces, parse_holder
from protocols.mdoc.age_over import (
    MAX_REQUESTED,
    AgeAnswer,
    answer,
    attestations,
    identifier,
    nearest,
    read,
    threshold,
    too_many,
)

T, F = True, False


@pytest.mark.parametrize(("ident", "nn"), [
    ("age_over_18", 18), ("age_over_00", 0), ("age_over_99", 99), ("age_over_8", None), ("age_over_180", None),
    ("age_over_1a", None), ("age_over_１８", None), ("age_in_years", None), ("birth_date", None), (18, None),
])
def test_threshold_is_two_ascii_digits(ident, nn):
    assert threshold(ident) == nn


def test_identifier_is_two_digits():
    assert identifier(5) == "age_over_05" and identifier(21) == "age_over_21"
    with pytest.raises(ValueError):
        identifier(100)


@pytest.mark.parametrize(("held", "requested", "returned"), [
    ({18: T, 20: T}, 18, 18),   # held: itself
    ({18: F, 20: F}, 20, 20),   # held, false: itself
    ({18: T, 20: T}, 16, 18),   # the TRUE one with the smallest NN above
    ({18: T, 20: T, 65: F}, 19, 20),
    ({18: F, 20: F}, 21, 20),   # else the FALSE one with the largest NN below
    ({18: F, 20: F, 16: F}, 19, 18),
    ({18: T, 20: T}, 21, None),  # TRUE below, nothing above: no answer
    ({18: F, 20: F}, 16, None),  # FALSE above, nothing below: no answer
    ({18: T, 20: F}, 19, None),  # 18 or 19: neither answers 19
    ({16: T, 18: F, 20: F}, 17, None),
    ({}, 18, None),
])
def test_nearest_is_the_rule_of_7_2_5(held, requested, returned):
    assert nearest(requested, held) == returned


def test_a_true_above_comes_before_a_false_below():
    """Step 1 before step 2: with inconsistent data (which no honest issuer signs) the TRUE
    above is still the one returned."""
    assert nearest(19, {18: F, 20: T}) == 20


@pytest.mark.parametrize(("requested", "returned", "value", "over"), [
    (21, 25, T, T), (21, 21, T, T), (21, 20, F, F), (21, 21, F, F),
    (18, 16, T, None), (18, 20, F, None),   # TRUE below, FALSE above: nothing of 18
    (18, 20, "yes", None), (18, 18, 1, None), (18, 18, None, None),
])
def test_what_an_answer_says_of_the_nn_asked(requested, returned, value, over):
    assert answer(requested, returned, value) is over


def test_attestations_are_the_boolean_age_over_nn():
    assert attestations({"age_over_18": T, "age_over_20": "no", "age_over_2": F, "family_name": "x",
                         "age_over_65": F}) == {18: T, 65: F}


def test_more_than_two_distinct_nn_are_too_many():
    assert MAX_REQUESTED == 2
    assert not too_many(["age_over_18", "age_over_21", "family_name", "age_over_18"])
    assert too_many(["age_over_18", "age_over_21", "age_over_25"])


def test_a_reader_reads_a_substitute_for_the_nn_it_asked():
    got = read("ns", 21, {"age_over_20": False, "family_name": "x"})
    assert (got.returned, got.value, got.over) == (20, False, False)
    assert got.meaning() == "the holder is under 21 (answered by age_over_20 = false, ISO/IEC 18013-5 7.2.5)"
    assert got.to_json() == {"namespace": "ns", "requested": "age_over_21", "returned": "age_over_20",
                             "value": False, "over": False, "meaning": got.meaning()}
    got = read("ns", 16, {"age_over_18": True})
    assert got.over is True and got.meaning().startswith("the holder is 16 or over (answered by age_over_18 = true")
    own = read("ns", 20, {"age_over_20": True, "age_over_18": True})
    assert (own.returned, own.over, own.meaning()) == (20, True, "the holder is 20 or over")


def test_a_substitute_that_breaks_the_rule_is_no_answer():
    """age_over_16 = true for a request for 18 says nothing of 18: never read as an answer."""
    got = read("ns", 18, {"age_over_16": True})
    assert got.returned is None and got.over is None and got.to_json()["returned"] is None
    assert got.meaning() == "age_over_18 not answered"
    assert read("ns", 18, {"age_over_20": False}).over is None


def test_contradicting_attestations_answer_nothing():
    got = read("ns", 19, {"age_over_20": True, "age_over_18": False})
    assert got.over is None and "contradict" in got.meaning()


def test_an_element_asked_and_disclosed_that_is_not_a_boolean_answers_nothing():
    got = AgeAnswer("ns", 18, 18, "yes")
    assert got.over is None and got.meaning() == "age_over_18 not answered: age_over_18 = 'yes' says nothing of it"


# -- the property: never wrong about the NN asked -----------------------------------------------

_HOLDER = {"family_name": "山田", "given_name": "花子", "family_name_kana": "やまだ", "given_name_kana": "はなこ",
           "sex": 2, "address": "東京都千代田区千代田1-1", "prefecture": "東京都", "municipality": "千代田区"}
_TODAY = dt.date(2026, 6, 1)


@given(birth=st.dates(dt.date(1930, 1, 1), _TODAY), days=st.integers(0, 3650),
       thresholds=st.sets(st.integers(1, 99), max_size=5), requested=st.integers(0, 99))
def test_the_answer_is_never_wrong_about_the_nn_asked(birth, days, thresholds, requested):
    """As issued (protocols.cardsub.build_namespaces: 18, 20 and the thresholds given, on the
    day in Japan), in both namespaces: the element the wallet returns, read by the reader,
    says the truth of age_over_<requested>; when none is returned no held element could have
    said it; the one returned is the nearest that does."""
    holder = parse_holder({**_HOLDER, "birth_date": birth.isoformat()}, today=_TODAY)
    now = dt.datetime.combine(_TODAY + dt.timedelta(days=days), dt.time(12), JST)
    issued = build_namespaces(holder, None, issue_date=now.date(), expiry_date=now.date() + dt.timedelta(days=1),
                              document_number="JPCS-1", now=now, age_thresholds=thresholds)
    truth = age_on(birth, now.date()) >= requested
    for ns in (DEFAULT_NAMES.namespace, ISO_NAMESPACE):
        held = attestations(issued[ns])
        returned = nearest(requested, held)
        answering = [nn for nn, v in held.items() if answer(requested, nn, v) is not None]
        if returned is None:
            assert not answering
            assert read(ns, requested, {}).over is None
            continue
        assert answer(requested, returned, held[returned]) is truth
        assert all(abs(nn - requested) >= abs(returned - requested) for nn in answering)
        got = read(ns, requested, {identifier(returned): held[returned]})
        assert got.over is truth and got.returned == returned
        # and no single element the issuer signed is ever read as the wrong answer
        for nn, v in held.items():
            assert read(ns, requested, {identifier(nn): v}).over in (None, truth)
