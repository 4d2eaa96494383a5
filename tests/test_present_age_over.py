"""The nearest age_over_NN (ISO/IEC 18013-5:2021 7.2.5) between our wallet and our reader:
asked an age_over_NN it does not hold, the wallet puts the nearest age_over_MM that answers
it to the holder (consent and intent to retain as for any item) on every path that answers
a request (proximity, NFC, Annex C, OpenID4VP with DCQL, over HTTP); the reader says what the
element it got means for the NN it asked, and takes no element that says nothing of it for
an answer. The card substitute issues age_over_18 and age_over_20 (in our namespace and the
ISO one): a holder of 17 asked age_over_21 answers age_over_20 = false (under 21), one of 36
asked age_over_16 answers age_over_18 = true (16 or over)."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from test_present_kit import (
    DOCTYPE,
    HOLDER,
    NS,
    PORTRAIT,
    STATUS_URI,
    T0,
    Clock,
    kit_pipeline,
    make_phone,
    make_pki,
)

import wallet_sim
from issuer.mdoc.issuance import device_key_from_spki, sign_card_substitute
from mcred.present import (
    personalise_mdoc_directly,
    present_in_process,
)
from protocols.cardsub import ISO_NAMESPACE
from protocols.mdoc import (
    Check,
    MsoStatus,
    StatusListRef,
    VerificationResult,
)
from protocols.mdoc.verify import DisclosedDocument
from reader.errors import ReaderSessionError, RequestSpecError
from reader.session import MATCHES_REQUEST, ReaderSession, RequestSpec
from wallet_sim.consent import RulesConsent
from wallet_sim.wallet import Wallet

#: every answer of the reader service held to its OpenAPI document (tests/documented.py)
pytestmark = pytest.mark.usefixtures("every_answer_checked")

ORIGIN = "https://shop.example"
UNDER_21 = "the holder is under 21 (answered by age_over_20 = false, ISO/IEC 18013-5 7.2.5)"


def _phone(home, pki, birth: dt.date) -> str:
    """A phone whose card substitute is issued (at the kit's T0) to the kit's holder born on ``birth``."""
    holder = dataclasses.replace(HOLDER, birth_date=birth)
    pid = wallet_sim.create_phone(home)
    personalise_mdoc_directly(
        wallet_sim.open_secure_element(pid, home).transmit, [0], lambda slot: bytes(32),
        lambda slot, spki, proof: sign_card_substitute(
            holder, PORTRAIT, device_key_from_spki(spki), pki.ds_active, now=T0, record_expiry=dt.date(2030, 4, 1),
            document_no="JPCS-TEST-0017", status=MsoStatus(StatusListRef(slot, STATUS_URI))).encode())
    return pid


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A phone of a holder aged 17 (born 2009-01-01) and one of 36 (the kit's), one PKI."""
    home = tmp_path_factory.mktemp("home")
    pki = make_pki()
    return {"home": home, "pki": pki, "minor": _phone(home, pki, dt.date(2009, 1, 1)),
            "adult": make_phone(home, pki)}


def wallet(world, who: str = "minor", consent=None) -> Wallet:
    se = wallet_sim.open_secure_element(world[who], world["home"])
    return Wallet(se.transmit, consent or RulesConsent.allow_all(), clock=Clock())


def ask(*ages: str, ns: str = NS, retain: bool = False, **more: bool) -> RequestSpec:
    return RequestSpec(DOCTYPE, {ns: {**dict.fromkeys(ages, retain), **more}})


def reader(world, *requests: RequestSpec) -> ReaderSession:
    return ReaderSession(list(requests), kit_pipeline(world["pki"]))


def check(out, name: str) -> dict:
    return next(c for c in out.result["checks"] if c["name"] == name)


def answered(out) -> list[tuple[str, str, str | None, object, bool | None]]:
    """(namespace, requested, returned, value, over) of every ageOver answer of the verdict."""
    return [(a["namespace"], a["requested"], a["returned"], a["value"], a["over"])
            for d in out.result["documents"] for a in d.get("ageOver", [])]


def response_event(out):
    return next(e for e in out.wallet_events if e.kind == "response")


# -- the reader asks for at most two age_over_NN -------------------------------------------------


def test_our_reader_asks_for_at_most_two_age_over_nn():
    with pytest.raises(RequestSpecError, match="at most 2 age_over_NN"):
        RequestSpec.parse(DOCTYPE, [f"{NS}:age_over_18,{NS}:age_over_20", f"{ISO_NAMESPACE}:age_over_21"])
    assert RequestSpec.parse(DOCTYPE, [f"{NS}:age_over_18,{ISO_NAMESPACE}:age_over_18,{NS}:age_over_21"])
    with pytest.raises(ReaderSessionError, match="at most 2 age_over_NN"):
        ReaderSession([ask("age_over_16", "age_over_18", "age_over_21")], None)


# -- the reader never reads an element that says nothing of NN as an answer ------------------------------


class Saying:
    """A verifier whose verdict is given: the documents a (lying) wallet disclosed."""

    def __init__(self, *elements: dict) -> None:
        self.documents = tuple(DisclosedDocument(DOCTYPE, e) for e in elements)

    def verify(self, response, **kwargs) -> VerificationResult:
        return VerificationResult((Check("device_authentication", True, "given"),), self.documents)


@pytest.mark.parametrize("given", [{"age_over_16": True}, {"age_over_20": False}])
def test_an_age_over_that_breaks_the_rule_is_not_an_answer(world, given):
    """age_over_16 = true (below, TRUE) or age_over_20 = false (above, FALSE) say nothing of
    18: not requested, and age_over_18 not answered."""
    out = present_in_process(wallet(world, "adult"), ReaderSession([ask("age_over_18")], Saying({NS: given})))
    assert not out.valid
    matches = check(out, MATCHES_REQUEST)
    assert matches["code"] == "not_requested"
    (ident, value), = given.items()
    assert matches["reason"] == (f"not requested: {NS}/{ident} (= {str(value).lower()} answers none of age_over_18, "
                                 "ISO/IEC 18013-5 7.2.5)")
    assert answered(out) == [(NS, "age_over_18", None, None, None)]


def test_an_age_over_that_answers_in_place_is_asked_as_far_as_matches_request_goes(world):
    out = present_in_process(wallet(world, "adult"), ReaderSession([ask("age_over_18")],
                                                                   Saying({NS: {"age_over_20": True}})))
    assert out.valid and check(out, MATCHES_REQUEST)["passed"]
    assert answered(out) == [(NS, "age_over_18", "age_over_20", True, True)]
