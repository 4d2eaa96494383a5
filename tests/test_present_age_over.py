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
import io

import pytest
from fastapi.testclient import TestClient
from rich.console import Console
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
from test_present_oid4vp import _clear_request, _released
from test_wallet_session import Peer

import wallet_sim
from issuer.mdoc.issuance import device_key_from_spki, sign_card_substitute
from mcred.present import (
    personalise_mdoc_directly,
    present_in_process,
    present_nfc_in_process,
    present_online_in_process,
    present_over_http,
    reader_app,
)
from protocols.cardsub import ISO_NAMESPACE
from protocols.mdoc import (
    Check,
    DeviceRequest,
    DeviceResponse,
    DocRequest,
    ItemsRequest,
    MsoStatus,
    StatusListRef,
    VerificationResult,
)
from protocols.mdoc.verify import DisclosedDocument
from reader.errors import ReaderSessionError, RequestSpecError
from reader.http import ReaderService
from reader.online import Oid4vpReaderSession, OnlineReaderSession
from reader.session import MATCHES_REQUEST, ReaderSession, RequestSpec
from wallet_sim.consent import InteractiveConsent, RulesConsent
from wallet_sim.wallet import Wallet

#: every answer of the reader service held to its OpenAPI document (tests/documented.py)
pytestmark = pytest.mark.usefixtures("every_answer_checked")

ORIGIN = "https://shop.example"
UNDER_21 = "the holder is under 21 (answered by age_over_20 = false, ISO/IEC 18013-5 7.2.5)"


def _phone(home, pki, birth: dt.date, *, status: bool = True) -> str:
    """A phone whose card substitute is issued (at the kit's T0) to the kit's holder born on
    ``birth`` (with a status list reference, or, ``status`` False, none)."""
    holder = dataclasses.replace(HOLDER, birth_date=birth)
    pid = wallet_sim.create_phone(home)
    personalise_mdoc_directly(
        wallet_sim.open_secure_element(pid, home).transmit, [0], lambda slot: bytes(32),
        lambda slot, spki, proof: sign_card_substitute(
            holder, PORTRAIT, device_key_from_spki(spki), pki.ds_active, now=T0, record_expiry=dt.date(2030, 4, 1),
            document_no="JPCS-TEST-0017", status=MsoStatus(StatusListRef(slot, STATUS_URI)) if status else None
        ).encode())
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


# -- proximity -----------------------------------------------------------------------------------


def test_a_minor_asked_age_over_21_discloses_age_over_20_false_and_the_reader_reads_under_21(world):
    out = present_in_process(wallet(world), reader(world, ask("age_over_21", family_name=False)))
    assert out.valid, out.result
    (doc,) = out.result["documents"]
    assert doc["elements"][NS] == {"family_name": "山田", "age_over_20": False}  # never an age_over_21
    assert answered(out) == [(NS, "age_over_21", "age_over_20", False, False)]
    assert doc["ageOver"][0]["meaning"] == UNDER_21
    event = response_event(out)
    assert "age_over_20 in place of age_over_21" in event.detail
    assert event.released == {NS: frozenset({"family_name", "age_over_20"})}
    # answered in its place: not "not held" (the event listed it there, as if unanswered)
    assert event.answered_by == {NS: {"age_over_21": "age_over_20"}}
    assert event.not_held == {} and not event.refused
    # answered in its place (the reader's ageOver says by what), so not "not returned" (ErrorCode
    # 0) in the document's errors, where it was: the other elements refused or not held still are
    assert DeviceResponse.decode(out.device_response).documents[0].errors is None
    out = present_in_process(wallet(world), reader(world, ask("age_over_21", family_name=False, no_such=False)))
    assert answered(out) == [(NS, "age_over_21", "age_over_20", False, False)]
    assert DeviceResponse.decode(out.device_response).documents[0].errors == {NS: {"no_such": 0}}


def test_an_adult_asked_age_over_16_discloses_age_over_18_true_in_either_namespace(world):
    request = RequestSpec(DOCTYPE, {NS: {"age_over_16": False}, ISO_NAMESPACE: {"age_over_16": False}})
    out = present_in_process(wallet(world, "adult"), reader(world, request))
    assert out.valid, out.result
    assert out.result["documents"][0]["elements"] == {NS: {"age_over_18": True}, ISO_NAMESPACE: {"age_over_18": True}}
    assert answered(out) == [(NS, "age_over_16", "age_over_18", True, True),
                             (ISO_NAMESPACE, "age_over_16", "age_over_18", True, True)]
    assert out.result["documents"][0]["ageOver"][0]["meaning"].startswith("the holder is 16 or over (answered by")


def test_over_nfc_too(world):
    out = present_nfc_in_process(wallet(world), reader(world, ask("age_over_21")))
    assert out.valid, out.result
    assert answered(out) == [(NS, "age_over_21", "age_over_20", False, False)]


def test_an_element_held_is_returned_itself(world):
    out = present_in_process(wallet(world), reader(world, ask("age_over_18", "age_over_20")))
    assert out.result["documents"][0]["elements"] == {NS: {"age_over_18": False, "age_over_20": False}}
    assert answered(out) == [(NS, "age_over_18", "age_over_18", False, False),
                             (NS, "age_over_20", "age_over_20", False, False)]
    assert [a["meaning"] for a in out.result["documents"][0]["ageOver"]] == [
        "the holder is under 18", "the holder is under 20"]


def test_nothing_is_returned_when_nothing_held_answers(world):
    """36 years old, asked age_over_21: age_over_18 and age_over_20 are TRUE below 21, which
    say nothing of it; the reader says so and does not take them for an answer."""
    out = present_in_process(wallet(world, "adult"), reader(world, ask("age_over_21", family_name=False)))
    assert out.valid, out.result
    assert out.result["documents"][0]["elements"] == {NS: {"family_name": "山田"}}
    assert answered(out) == [(NS, "age_over_21", None, None, None)]
    assert out.result["documents"][0]["ageOver"][0]["meaning"] == "age_over_21 not answered"
    # nothing answered it: not returned (ErrorCode 0)
    assert DeviceResponse.decode(out.device_response).documents[0].errors == {NS: {"age_over_21": 0}}


def test_two_asked_answered_by_one_element_send_it_once(world):
    out = present_in_process(wallet(world), reader(world, ask("age_over_21", "age_over_25")))
    assert out.valid, out.result
    assert out.result["documents"][0]["elements"] == {NS: {"age_over_20": False}}
    assert answered(out) == [(NS, "age_over_21", "age_over_20", False, False),
                             (NS, "age_over_25", "age_over_20", False, False)]
    assert DeviceResponse.decode(out.device_response).documents[0].errors is None  # both answered


def test_the_rule_comes_before_an_alternative_which_stands_in_for_what_it_leaves(world):
    """Asked age_over_21 or, in its place, birth_date (second edition): a holder of 17 answers
    age_over_20 = false, not the birth date; one of 36, whom nothing held answers, birth_date."""
    from protocols.mdoc import AlternativeDataElements, DocRequestInfo

    info = DocRequestInfo(alternative_data_elements=(
        AlternativeDataElements((NS, "age_over_21"), (((NS, "birth_date"),),)),))
    spec = ask("age_over_21").with_info(info)
    assert present_in_process(wallet(world), reader(world, spec)).result["documents"][0]["elements"] == {
        NS: {"age_over_20": False}}
    adult = present_in_process(wallet(world, "adult"), reader(world, spec))
    assert adult.valid and set(adult.result["documents"][0]["elements"][NS]) == {"birth_date"}


# -- the holder decides on the element disclosed, as on any ------------------------------------------


def test_the_prompt_shows_what_is_disclosed_in_place_and_its_intent_to_retain(world):
    shown, asked = [], []

    def answer(q: str) -> str:
        asked.append(q)
        return "y"

    out = present_in_process(wallet(world, consent=InteractiveConsent(ask=answer, show=shown.append)),
                             reader(world, ask("age_over_21", retain=True)))
    assert out.valid
    assert f"  {NS} / age_over_21: not held" in shown
    assert asked == [f"  release {NS} / age_over_20 (will be RETAINED) (in place of age_over_21, which this document "
                     "does not hold: its value false tells the reader the holder is under 21)? [y/N] "]
    not_age = InteractiveConsent(ask=lambda q: "n" if "age_over_20" in q else "y", show=lambda s: None)
    declined = present_in_process(wallet(world, consent=not_age), reader(world, ask("age_over_21", family_name=False)))
    assert declined.result["documents"][0]["elements"] == {NS: {"family_name": "山田"}}
    assert answered(declined) == [(NS, "age_over_21", None, None, None)]
    # the element in its place declined: nothing answers age_over_21, which is not returned
    assert DeviceResponse.decode(declined.device_response).documents[0].errors == {NS: {"age_over_21": 0}}


def test_rules_judge_the_element_disclosed_not_the_one_asked(world):
    """Rules releasing age_over_21 do not release age_over_20 (which says more: under 20)."""
    only_21 = RulesConsent.from_mapping({"documents": {"*": {"*": ["age_over_21", "family_name"]}}})
    out = present_in_process(wallet(world, consent=only_21), reader(world, ask("age_over_21", family_name=False)))
    assert out.result["documents"][0]["elements"] == {NS: {"family_name": "山田"}}
    with_20 = RulesConsent.from_mapping({"documents": {"*": {"*": ["age_over_20"]}}})
    out = present_in_process(wallet(world, consent=with_20), reader(world, ask("age_over_21")))
    assert out.result["documents"][0]["elements"] == {NS: {"age_over_20": False}}


def test_the_element_in_place_carries_the_intent_to_retain_of_what_it_answers(world):
    careful = RulesConsent.from_mapping({"documents": {"*": {"*": "*"}}, "refuse_intent_to_retain": True})
    out = present_in_process(wallet(world, consent=careful), reader(world, ask("age_over_21", retain=True,
                                                                                family_name=False)))
    assert out.result["documents"][0]["elements"] == {NS: {"family_name": "山田"}}
    # age_over_20 asked without intent to retain, and in place of age_over_21 with it: retained
    both = RequestSpec(DOCTYPE, {NS: {"age_over_20": False, "age_over_21": True, "family_name": False}})
    out = present_in_process(wallet(world, consent=careful), reader(world, both))
    assert out.result["documents"][0]["elements"] == {NS: {"family_name": "山田"}}
    assert response_event(out).refused == {NS: frozenset({"age_over_20"})}


# -- more than two age_over_NN ------------------------------------------------------------------------


def test_our_reader_asks_for_at_most_two_age_over_nn():
    with pytest.raises(RequestSpecError, match="at most 2 age_over_NN"):
        RequestSpec.parse(DOCTYPE, [f"{NS}:age_over_18,{NS}:age_over_20", f"{ISO_NAMESPACE}:age_over_21"])
    assert RequestSpec.parse(DOCTYPE, [f"{NS}:age_over_18,{ISO_NAMESPACE}:age_over_18,{NS}:age_over_21"])
    with pytest.raises(ReaderSessionError, match="at most 2 age_over_NN"):
        ReaderSession([ask("age_over_16", "age_over_18", "age_over_21")], None)


def test_a_request_for_more_than_two_age_over_nn_gets_none_of_them(world):
    """A ladder (16, 18, 21) would narrow the holder's age down: the wallet releases none of
    its rungs, held or not, and answers the rest."""
    session = wallet(world, "adult").start()
    peer = Peer(session)
    request = DeviceRequest((DocRequest(ItemsRequest.build(DOCTYPE, {NS: {
        "age_over_16": False, "age_over_18": False, "age_over_21": False, "family_name": False}})),))
    response = peer.response(session.receive(peer.establishment(request.encode())))
    (doc,) = response.documents
    assert {i.element_identifier for i in doc.issuer_signed.items()[NS]} == {"family_name"}
    assert set(doc.errors[NS]) == {"age_over_16", "age_over_18", "age_over_21"}
    event = next(e for e in session.events if e.kind == "response")
    assert "age_over_16, age_over_18, age_over_21 withheld: more than 2 age_over_NN asked" in event.detail


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
    assert matches["reason"] == (f"not requested: {NS}/{ident} (= {str(value).lower()}: not the element that answers "
                                 "age_over_18 in its place, ISO/IEC 18013-5 7.2.5)")
    assert answered(out) == [(NS, "age_over_18", None, None, None)]


@pytest.mark.parametrize(("asked", "given", "extra"), [
    # beside the element asked itself: age_over_18 = false says more (under 18) than was asked
    ("age_over_20", {"age_over_20": False, "age_over_18": False}, "age_over_18"),
    # a second beside the nearest: the mdoc returns one element for an age_over_NN
    ("age_over_16", {"age_over_18": True, "age_over_20": True}, "age_over_20"),
])
def test_an_age_over_beside_the_answer_is_a_disclosure_of_its_own(world, asked, given, extra):
    out = present_in_process(wallet(world, "adult"), ReaderSession([ask(asked)], Saying({NS: given})))
    matches = check(out, MATCHES_REQUEST)
    assert not out.valid and matches["code"] == "not_requested"
    assert matches["reason"].startswith(f"not requested: {NS}/{extra} (= ")
    assert check(out, MATCHES_REQUEST)["reason"].count(NS) == 1


def test_an_age_over_that_answers_in_place_is_asked_as_far_as_matches_request_goes(world):
    out = present_in_process(wallet(world, "adult"), ReaderSession([ask("age_over_18")],
                                                                   Saying({NS: {"age_over_20": True}})))
    assert out.valid and check(out, MATCHES_REQUEST)["passed"]
    assert answered(out) == [(NS, "age_over_18", "age_over_20", True, True)]


# -- online: Annex C, OpenID4VP (DCQL), and the reader service over HTTP ------------------------------------


def test_online_annex_c(world):
    out = present_online_in_process(wallet(world), OnlineReaderSession([ask("age_over_21")],
                                                                       kit_pipeline(world["pki"]), ORIGIN))
    assert out.valid, out.result
    assert out.result["documents"][0]["elements"] == {NS: {"age_over_20": False}}
    assert out.result["documents"][0]["ageOver"][0]["meaning"] == UNDER_21


def test_openid4vp_dcql(world):
    out = present_online_in_process(wallet(world), Oid4vpReaderSession([ask("age_over_21", family_name=False)],
                                                                       kit_pipeline(world["pki"]), ORIGIN))
    assert out.valid, out.result
    assert out.result["documents"][0]["elements"] == {NS: {"family_name": "山田", "age_over_20": False}}
    assert answered(out) == [(NS, "age_over_21", "age_over_20", False, False)]


def _card(*claims: dict, claim_sets=None) -> dict:
    query = {"id": "card", "format": "mso_mdoc", "meta": {"doctype_value": DOCTYPE}, "claims": list(claims)}
    return {"credentials": [{**query, **({"claim_sets": claim_sets} if claim_sets else {})}]}


def test_dcql_values_and_claim_sets_are_judged_by_the_answer(world):
    """A DCQL claim for age_over_21 is held when the rule answers it, its value the answer:
    ``values: [true]`` is not met by age_over_20 = false, ``[false]`` is; and a claim set of
    it comes before a later one of birth_date."""
    def released(dcql: dict) -> dict:
        answer = wallet(world).online(ORIGIN).respond(_clear_request(dcql))
        return _released(answer) if "vp_token" in answer["data"] else {}

    assert released(_card({"path": [NS, "age_over_21"], "values": [True]})) == {}
    assert released(_card({"path": [NS, "age_over_21"], "values": [False]})) == {"card": {"age_over_20"}}
    assert released(_card({"id": "a", "path": [NS, "age_over_21"]}, {"id": "b", "path": [NS, "birth_date"]},
                          claim_sets=[["a"], ["b"]])) == {"card": {"age_over_20"}}
    adult = wallet(world, "adult").online(ORIGIN).respond(_clear_request(
        _card({"id": "a", "path": [NS, "age_over_21"]}, {"id": "b", "path": [NS, "birth_date"]},
              claim_sets=[["a"], ["b"]])))
    assert _released(adult) == {"card": {"birth_date"}}  # nothing held answers 21 for a holder of 36


def test_over_http_the_verdict_carries_the_answer_as_documented(world):
    service = ReaderService(kit_pipeline(world["pki"]), [ask("age_over_21", family_name=False)])
    with TestClient(reader_app(service)) as client:
        out = present_over_http(wallet(world), str(client.base_url), client=client)
    assert out.valid, out.result
    assert answered(out) == [(NS, "age_over_21", "age_over_20", False, False)]


def test_mcred_present_prints_what_the_answer_means(world):
    from mcred.cli.present_cmds import render

    out = present_in_process(wallet(world), reader(world, ask("age_over_21")))
    text = io.StringIO()
    render(Console(file=text, width=200), out.result)
    assert f"{NS} / age_over_21 asked: {UNDER_21}" in text.getvalue()


# -- verifying a saved presentation again: the age_over_NN the request asked ------------------------------


def test_mcred_verify_and_mdoc_verify_report_the_age_over_asked(world, tmp_path):
    """A saved presentation does not carry its request: ``--age-over 21`` tells ``mcred
    verify`` (the reader pipeline) and ``mcred mdoc verify`` (the core) what was asked, and
    each reports ageOver as the reader that asked did; without it, none. A value that is no
    age_over_NN, or a third NN, is refused (exit 2)."""
    import json

    from typer.testing import CliRunner

    from mcred.cli.main import app

    minor = _phone(world["home"], world["pki"], dt.date(2009, 1, 1), status=False)  # no status list to fetch here
    out = present_in_process(wallet({**world, "minor": minor}), reader(world, ask("age_over_21", family_name=False)))
    assert out.valid, out.result
    saved, pem = tmp_path / "t.cbor", tmp_path / "iaca.pem"
    saved.write_bytes(out.saved())
    pem.write_bytes(world["pki"].iaca_pem())
    at = (T0 + dt.timedelta(hours=1)).isoformat()
    commands = (["verify", str(saved), "--trust", str(pem), "--offline"],
                ["mdoc", "verify", str(saved), "--trust-anchor", str(pem)])
    for command in commands:
        r = CliRunner().invoke(app, [*command, "--at", at, "--json", "--age-over", "21", "--age-over", "age_over_21"])
        assert r.exit_code == 0, r.output
        (doc,) = json.loads(r.stdout.strip().splitlines()[-1])["documents"]
        assert doc["ageOver"] == out.result["documents"][0]["ageOver"], r.output
        assert doc["ageOver"][0]["meaning"] == UNDER_21
        r = CliRunner().invoke(app, [*command, "--at", at, "--json"])
        assert "ageOver" not in json.loads(r.stdout.strip().splitlines()[-1])["documents"][0]
        for bad in (["--age-over", "21a"], ["--age-over", "16", "--age-over", "18", "--age-over", "21"]):
            r = CliRunner().invoke(app, [*command, "--at", at, "--json", *bad])
            assert r.exit_code == 2 and "--age-over" in json.loads(r.stdout)["error"], r.output
    r = CliRunner().invoke(app, [*commands[1], "--at", at, "--age-over", "21"])
    assert f"{NS} / age_over_21 asked: {UNDER_21}" in " ".join(r.output.split()), r.output
