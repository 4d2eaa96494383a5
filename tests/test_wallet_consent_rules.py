"""The holder's consent rules (wallet_sim/consent.py), each rule held by a test, where
mutation testing found none: who a rules file releases to (require_reader_authentication,
trusted_readers_only, origins), what it releases (documents, wildcards, IntentToRetain,
ISO/IEC 18013-5 §8.3.2.1.2.1), what a malformed file is, and what the interactive prompt
does with an answer that is not a yes."""

from __future__ import annotations

import pytest

from wallet_sim.consent import (
    ConsentError,
    ConsentRequest,
    InteractiveConsent,
    NotedConsent,
    ReaderIdentity,
    RulesConsent,
)

DOC, NS, OTHER_NS = "org.example.doc", "org.example.ns", "org.example.other"
VERIFIED = ReaderIdentity("CN=Shop", True, True)
UNTRUSTED = ReaderIdentity("CN=Shop", True, False, "issuer not trusted")
FORGED = ReaderIdentity("CN=Shop", False, True, "signature does not verify")  # a trusted chain, a bad signature
ALL = {"documents": {"*": {"*": "*"}}}


def request(reader=None, *, origin=None, items=None, doc=DOC) -> ConsentRequest:
    return ConsentRequest(doc, items or {NS: {"family_name": False}}, reader, {}, origin)


def rules(**kw) -> RulesConsent:
    return RulesConsent.from_mapping({**ALL, **kw})


# -- to whom -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("reader", "released"), [
    (None, False), (FORGED, False), (UNTRUSTED, True), (VERIFIED, True)])
def test_require_reader_authentication_releases_only_to_a_reader_whose_signature_verifies(reader, released):
    """§9.1.4: an anonymous reader, or one whose readerAuth does not verify, has not
    authenticated; one whose signature verifies has, trusted or not."""
    got = rules(require_reader_authentication=True).decide(request(reader))
    assert got == ({NS: {"family_name"}} if released else {})


@pytest.mark.parametrize(("reader", "released"), [
    (None, False), (FORGED, False), (UNTRUSTED, False), (VERIFIED, True)])
def test_trusted_readers_only_releases_only_to_a_verified_reader_of_a_trusted_ca(reader, released):
    """A trusted certificate on a signature that does not verify is anyone's."""
    got = rules(trusted_readers_only=True).decide(request(reader))
    assert got == ({NS: {"family_name"}} if released else {})


def test_origins_limit_online_requests_and_leave_proximity_ones_alone():
    r = rules(origins=["https://rp.example/"])  # the slash a person may type is not part of an origin
    assert r.decide(request(origin="https://rp.example")) == {NS: {"family_name"}}
    assert r.decide(request(origin="https://evil.example")) == {}
    assert r.decide(request()) == {NS: {"family_name"}}


# -- what ---------------------------------------------------------------------------------------------


def test_refuse_intent_to_retain_refuses_only_the_items_to_be_retained():
    items = {NS: {"family_name": False, "portrait": True}}
    assert rules(refuse_intent_to_retain=True).decide(request(items=items)) == {NS: {"family_name"}}
    assert rules().decide(request(items=items)) == {NS: {"family_name", "portrait"}}


def test_documents_release_the_listed_identifiers_by_doctype_and_namespace_or_their_wildcards():
    items = {NS: {"family_name": False, "portrait": False}, OTHER_NS: {"family_name": False}}
    listed = RulesConsent.from_mapping({"documents": {DOC: {NS: ["family_name"]}}})
    assert listed.decide(request(items=items)) == {NS: {"family_name"}}
    any_doc = RulesConsent.from_mapping({"documents": {"*": {NS: ["portrait"]}}})
    assert any_doc.decide(request(items=items)) == {NS: {"portrait"}}
    any_ns = RulesConsent.from_mapping({"documents": {DOC: {"*": ["family_name"]}}})
    assert any_ns.decide(request(items=items)) == {NS: {"family_name"}, OTHER_NS: {"family_name"}}
    # a docType's own entry does not hide the wildcard's
    both = RulesConsent.from_mapping({"documents": {DOC: {OTHER_NS: "*"}, "*": {NS: ["portrait"]}}})
    assert both.decide(request(items=items)) == {NS: {"portrait"}, OTHER_NS: {"family_name"}}
    assert listed.decide(request(items=items, doc="org.example.another")) == {}


# -- the rules file ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "where"), [
    ({**ALL, "trusted_reader_only": True}, "unknown keys ['trusted_reader_only']"),  # a typo is not ignored
    ({**ALL, "trusted_readers_only": "true"}, "trusted_readers_only: expected true or false"),
    ({**ALL, "require_reader_authentication": 1}, "require_reader_authentication: expected true or false"),
    ({**ALL, "refuse_intent_to_retain": "yes"}, "refuse_intent_to_retain: expected true or false"),
    ({**ALL, "origins": "https://rp.example"}, "origins: expected a list"),
    ({**ALL, "origins": [""]}, "origins: expected a list"),
    ({"documents": {DOC: {NS: ["family_name", 3]}}}, "expected \"*\" or a list of identifiers"),
    ({"documents": {DOC: {NS: "family_name"}}}, "expected \"*\" or a list of identifiers"),
])
def test_a_rules_file_that_would_be_read_other_than_meant_is_refused(value, where):
    with pytest.raises(ConsentError) as caught:
        RulesConsent.from_mapping(value, "rules")
    assert str(caught.value).startswith("rules") and where in str(caught.value)


# -- the interactive prompt and what the screen says ------------------------------------------------------


def test_the_prompt_releases_only_on_yes_and_asks_nothing_of_an_element_not_held():
    questions: list[str] = []
    answers = iter(["", "no", "Y"])
    prompt = InteractiveConsent(ask=lambda q: questions.append(q) or next(answers), show=lambda s: None)
    items = {NS: {"family_name": False, "given_name": False, "portrait": True, "not_held": False}}
    got = prompt.decide(ConsentRequest(DOC, items, VERIFIED, {NS: frozenset({"family_name", "given_name",
                                                                                 "portrait"})}))
    assert got == {NS: {"portrait"}}
    assert len(questions) == 3 and not any("not_held" in q for q in questions)
    assert "(will be RETAINED)" in questions[2] and "RETAINED" not in questions[0]


def test_the_prompt_names_the_web_site_of_an_online_request():
    shown: list[str] = []
    InteractiveConsent(ask=lambda q: "n", show=shown.append).decide(request(origin="https://rp.example"))
    assert shown[0] == "web site: https://rp.example (online request, as the browser reports it)"


@pytest.mark.parametrize(("reader", "text"), [
    (VERIFIED, "reader: CN=Shop (verified)"),
    (FORGED, "reader: CN=Shop (NOT verified)"),
    (UNTRUSTED, "reader: CN=Shop (signature valid, reader certificate NOT trusted: issuer not trusted)"),
    (ReaderIdentity("CN=Shop", True, False, "leaf certificate lacks extended key usage 1.0.18013.5.1.6"),
     "reader: CN=Shop (signature valid, reader certificate NOT trusted: leaf certificate lacks extended key usage "
     "1.0.18013.5.1.6)"),
    (ReaderIdentity("CN=Shop", True, False), "reader: CN=Shop (signature valid, reader certificate NOT trusted)"),
    (ReaderIdentity("CN=Shop", True, False, "revoked (keyCompromise)", revocation_failed=True),
     "reader: CN=Shop (signature valid, certificate NOT trusted: revoked, or its revocation unknown) - "
     "revoked (keyCompromise)"),
    (ReaderIdentity("CN=Shop", False, False, "x"), "reader: CN=Shop (NOT verified) - x"),
    (None, "reader: anonymous (no reader authentication)"),
])
def test_the_screen_says_verified_only_of_a_valid_signature_by_a_trusted_reader(reader, text):
    notes: list[str] = []
    NotedConsent(rules(), notes.append).decide(request(reader))
    assert notes == [text]


def test_unattended_rules_say_why_they_released_nothing():
    notes: list[str] = []
    NotedConsent(rules(require_reader_authentication=True), notes.append).decide(request())
    assert notes[1] == ("released nothing: the rules release only to a reader that authenticates "
                        "(require_reader_authentication)")
