"""The reader's side of a session, rule by rule, where mutation testing found no test
holding the rule (each test kills a mutant of reader/session.py or reader/online.py the
suite let through): a session starts once, a resumed one goes on with the message counters
where they were (ISO/IEC 18013-5 §9.1.1.5), only requested documents and elements are taken
(§8.3.2.1.2.2), a hostile reader judges the phone's refusal by its exact status, and an
online session's origin is a serialized web origin and its answer is this session's."""

from __future__ import annotations

import re

import pytest
from test_present_kit import DOCTYPE, NS, reader_pki, reader_world

import wallet_sim
from mcred.present import present_in_process
from protocols.mdoc import (
    AlternativeDataElements,
    Check,
    DeviceRequest,
    DeviceResponse,
    DocRequest,
    DocRequestInfo,
    ItemsRequest,
    SessionData,
    SessionEncryption,
    SessionEstablishment,
    VerificationResult,
)
from protocols.mdoc.verify import DisclosedDocument
from reader.errors import ReaderSessionError
from reader.hostile import HOSTILE
from reader.session import MATCHES_REQUEST, WALLET_REFUSAL, ReaderSession, RequestSpec
from wallet_sim.consent import RulesConsent
from wallet_sim.engagement import Engagement
from wallet_sim.wallet import Wallet

REQUEST = RequestSpec(DOCTYPE, {NS: {"family_name": False}})


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return reader_world(tmp_path_factory.mktemp("home"))


def wallet(world) -> Wallet:
    se = wallet_sim.open_secure_element(world["phone"], world["home"])
    return Wallet(se.transmit, RulesConsent.allow_all(), clock=world["clock"])


# -- starting, resuming ------------------------------------------------------------------------------


def test_a_reader_session_starts_once():
    reader = ReaderSession([REQUEST], None)
    reader.start(Engagement.new().bytes)
    with pytest.raises(ReaderSessionError, match="start: session is awaiting_response"):
        reader.start(Engagement.new().bytes)


def test_reader_authentication_needs_the_readers_certificate_chain():
    with pytest.raises(ReaderSessionError, match="readerAuth needs the reader certificate chain"):
        ReaderSession([REQUEST], None, reader_signer=reader_pki().signer)


def test_a_resumed_session_goes_on_with_the_message_counters_where_they_were(world):
    """Another worker resumes a session from its EReaderKey and transcript: the reader sent
    message 1 (the DeviceRequest), so what it sends next is message 2 and what it takes
    next is the mdoc's message 1 (§9.1.1.5: each side counts its own messages)."""
    phone = wallet(world).start()
    first = ReaderSession([REQUEST], world["pipeline"])
    answer = phone.receive(first.start(phone.engagement.bytes))
    resumed = ReaderSession.resume([REQUEST], world["pipeline"], first.e_reader_private_key, first.transcript.raw)
    # the next request of the resumed reader is one the phone decrypts (its message 2) ...
    again = DeviceRequest((DocRequest(ItemsRequest.build(DOCTYPE, {NS: {"given_name": False}})),)).encode()
    second_answer = phone.receive(SessionData(data=resumed._crypto.encrypt(again)).encode())
    assert SessionData.decode(second_answer).data is not None and phone.state == "open"
    # ... and the phone's first answer is the resumed reader's to verify
    assert resumed.receive(answer).valid


def test_resuming_a_transcript_without_a_device_engagement_is_refused_as_such(world):
    from cryptography.hazmat.primitives.asymmetric import ec

    from protocols.mdoc import dcapi

    key = ec.generate_private_key(ec.SECP256R1())
    online = dcapi.session_transcript(dcapi.EncryptionInfo.build(key.public_key()), "https://shop.example")
    with pytest.raises(ReaderSessionError, match="resume: SessionTranscript without DeviceEngagementBytes"):
        ReaderSession.resume([REQUEST], world["pipeline"], key, online.raw)


# -- only what was requested (§8.3.2.1.2.2) ------------------------------------------------------------


class Saying:
    """A verifier whose verdict is given (the documents a response disclosed)."""

    def __init__(self, *documents: DisclosedDocument) -> None:
        self.documents = documents

    def verify(self, response, **kwargs) -> VerificationResult:
        return VerificationResult((Check("device_authentication", True, "given"),), self.documents)


def test_a_disclosed_document_of_a_doctype_not_requested_fails_matches_request(world):
    out = present_in_process(wallet(world), ReaderSession([REQUEST], Saying(
        DisclosedDocument(DOCTYPE, {NS: {"family_name": "山田"}}),
        DisclosedDocument("org.iso.18013.5.1.mDL", {"org.iso.18013.5.1": {"family_name": "山田"}}))))
    matches = next(c for c in out.result["checks"] if c["name"] == MATCHES_REQUEST)
    assert not out.valid and not matches["passed"]
    assert matches["reason"] == "not requested: docType org.iso.18013.5.1.mDL not requested"


def test_alternatives_count_as_asked_only_for_an_element_that_was_asked():
    """An alternativeDataElements set stands in for its requested element: one of an element
    the request does not ask for allows nothing."""
    info = DocRequestInfo(alternative_data_elements=(
        AlternativeDataElements((NS, "age_over_21"), (((NS, "birth_date"),),)),
        AlternativeDataElements((NS, "family_name"), (((NS, "family_name_kana"),),))))
    spec = RequestSpec(DOCTYPE, {NS: {"family_name": False}}, info)
    assert spec.allowed() == {NS: {"family_name", "family_name_kana"}}


# -- a hostile reader judges the phone's refusal ---------------------------------------------------------


def _hostile_exchange(world, name: str, reply):
    """A hostile reader of ``name`` against a phone that answers ``reply(crypto)`` (its
    SessionData bytes, given the phone's session encryption)."""
    phone = wallet(world).start()
    reader = ReaderSession([REQUEST], world["pipeline"], hostile=HOSTILE[name])
    est = SessionEstablishment.decode(reader.start(phone.engagement.bytes))
    crypto = SessionEncryption.for_mdoc(phone.engagement.e_device_private_key, est.e_reader_key, reader.transcript)
    outcome = reader.receive(reply(crypto))
    return next(c for c in outcome.result.checks if c.name == WALLET_REFUSAL)


def test_a_hostile_reader_takes_only_the_session_status_the_standard_names(world):
    """wrong-session-key: the phone must answer SessionData status 10 (§9.1.1.4); 11 is a
    wrong answer."""
    assert _hostile_exchange(world, "wrong-session-key", lambda c: SessionData(status=10).encode()).passed
    assert not _hostile_exchange(world, "wrong-session-key", lambda c: SessionData(status=11).encode()).passed


def test_a_hostile_reader_refuses_documents_beside_the_right_error_status(world):
    """garbage-request: the phone must answer DeviceResponse status 11 with no document
    (§8.3.2.1.2.3); status 11 with a document disclosed is not a refusal."""
    reader = ReaderSession([REQUEST], world["pipeline"])
    phone = wallet(world).start()
    documents = DeviceResponse.decode(reader.receive(phone.receive(reader.start(phone.engagement.bytes)))
                                      .device_response).documents
    assert documents

    def answering(response: DeviceResponse):
        return lambda crypto: SessionData(data=crypto.encrypt(response.encode())).encode()

    assert _hostile_exchange(world, "garbage-request", answering(DeviceResponse(status=11))).passed
    check = _hostile_exchange(world, "garbage-request", answering(DeviceResponse(documents, status=11)))
    assert not check.passed and "1 document(s)" in check.reason


# -- online sessions ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("origin", ["https://user@shop.example", "https://user:pw@shop.example",
                                    "https://shop.example?x=1", "https://shop.example#f"])
def test_an_online_readers_origin_carries_no_user_query_or_fragment(origin):
    from reader.online import check_origin

    with pytest.raises(ReaderSessionError, match="expected scheme://host"):
        check_origin(origin)


def test_an_online_session_is_resumed_only_from_a_transcript_of_its_own_kind(world):
    """Annex C's, OpenID4VP's over the Digital Credentials API and cross-device transcripts
    bind different things (origin, nonce, key, client_id, response_uri): a session of one
    kind never continues from another's (nor from a proximity one)."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from protocols.mdoc import dcapi, oid4vp
    from reader.online import Oid4vpReaderSession, OnlineReaderSession

    key = ec.generate_private_key(ec.SECP256R1())
    annex_c = dcapi.session_transcript(dcapi.EncryptionInfo.build(key.public_key()), "https://shop.example").raw
    openid = oid4vp.session_transcript("https://shop.example", "n-1", None).raw
    proximity = ReaderSession([REQUEST], None)
    proximity.start(Engagement.new().bytes)
    for cls, others in ((OnlineReaderSession, (openid, proximity.transcript.raw)),
                        (Oid4vpReaderSession, (annex_c, proximity.transcript.raw))):
        for transcript in others:
            with pytest.raises(ReaderSessionError, match=re.escape(f"resume: not an {cls.kind} SessionTranscript")):
                cls.resume([REQUEST], world["pipeline"], key, transcript)
    assert OnlineReaderSession.resume([REQUEST], world["pipeline"], key, annex_c).state == "awaiting_response"


def _annex_c(world):
    from reader.online import OnlineReaderSession

    return OnlineReaderSession([REQUEST], world["pipeline"], "https://shop.example")


def test_an_online_session_starts_once_and_with_no_device_engagement(world):
    reader = _annex_c(world)
    with pytest.raises(ReaderSessionError, match="an online session has no device engagement"):
        reader.start(Engagement.new().bytes)
    assert reader.state == "idle"
    reader.start()
    with pytest.raises(ReaderSessionError, match="start: session is awaiting_response"):
        reader.start()


def test_an_online_answer_is_verified_once_and_a_second_gets_the_first_verdict(world):
    """The EncryptedResponse of a session is verified once; anything sent after the verdict
    (a replay, another answer) gets that verdict again, not a second verification."""
    from reader.online import credential_message

    calls = []

    class Counting:
        def verify(self, response, **kwargs):
            calls.append(response)
            return world["pipeline"].verify(response, **kwargs)

    from reader.online import OnlineReaderSession

    reader = OnlineReaderSession([REQUEST], Counting(), "https://shop.example")
    answer = credential_message(wallet(world).online("https://shop.example").respond(reader.start()))
    first = reader.receive(answer)
    assert first.valid and len(calls) == 1
    assert reader.receive(answer) is first and reader.receive(b"\xa0") is first and len(calls) == 1


def test_a_cross_device_answer_whose_encrypted_state_is_another_sessions_is_refused(world):
    """direct_post.jwt (OpenID4VP 1.0 8.3.1): the state travels inside the JWE too; an
    answer encrypted to this session's key whose payload names another request's state is
    not this session's answer, whatever the form says in the clear."""
    from urllib.parse import urlencode

    from protocols.mdoc import oid4vp
    from reader.online import Oid4vpRedirectReaderSession

    reader = Oid4vpRedirectReaderSession([REQUEST], world["pipeline"],
                                         response_uri="https://shop.example/oid4vp/responses/s1")
    session = wallet(world).cross_device(reader.start()["uri"])
    post = session.respond(None)
    payload = oid4vp.open_response(post.form["response"], reader.e_reader_private_key)
    assert payload["state"] == reader.redirect.state
    forged = oid4vp.encrypt({**payload, "state": "another-session"}, reader.redirect.request)
    for form in ({"response": forged}, {"response": forged, "state": reader.redirect.state}):
        outcome = reader.receive(urlencode(form).encode())
        assert not outcome.valid and outcome.result.checks[0].reason == (
            "state: the encrypted response does not carry this session's state")
        reader.state, reader.outcome = "awaiting_response", None  # the same session, answered again
    assert reader.receive(urlencode(post.form).encode()).valid


def test_a_cross_device_reader_that_asked_for_an_encrypted_answer_refuses_one_in_the_clear(world):
    """The reader asked for direct_post.jwt: a vp_token posted in the clear (readable by
    whatever carried it) is refused, even one made for this request."""
    import json
    from urllib.parse import urlencode

    from protocols.mdoc import oid4vp
    from reader.online import Oid4vpRedirectReaderSession

    reader = Oid4vpRedirectReaderSession([REQUEST], world["pipeline"],
                                         response_uri="https://shop.example/oid4vp/responses/s1")
    post = wallet(world).cross_device(reader.start()["uri"]).respond(None)
    payload = oid4vp.open_response(post.form["response"], reader.e_reader_private_key)
    clear = {"vp_token": json.dumps(payload["vp_token"]), "state": payload["state"]}
    outcome = reader.receive(urlencode(clear).encode())
    assert not outcome.valid and outcome.result.checks[0].reason == (
        "vp_token in the clear: this reader asked for an encrypted response (direct_post.jwt)")


def test_a_signed_cross_device_session_needs_the_request_uri_it_is_served_at(world):
    """A signed request goes by reference (OpenID4VP 1.0 5.10): without its request_uri
    there is nothing for the QR code to name."""
    from reader.online import Oid4vpRedirectReaderSession

    pki = reader_pki("Shop Web Verifier", ca_cn="Shop CA", dns="shop.example", eku=False)
    with pytest.raises(ReaderSessionError, match="request_uri it is served at"):
        Oid4vpRedirectReaderSession([REQUEST], world["pipeline"], response_uri="https://shop.example/r/1",
                                    reader_signer=pki.signer, reader_chain=pki.chain)
