"""The holder's side of a proximity session, rule by rule, where mutation testing found no
test holding the rule (each of these tests kills a mutant of wallet_sim/wallet.py that the
suite let through): the SessionData status codes and the end of a session (ISO/IEC 18013-5
§9.1.1.4), what is released (§8.3.2.1.2.2: only what was asked, held, and consented to),
and reader authentication by readerAuthAll (second edition, specs/presentation.md 14)."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from test_present_kit import DOCTYPE, NS, T0, Clock, issue, make_pki, reader_pki
from test_wallet_session import Peer

import wallet_sim
from mcred.present import personalise_mdoc_directly
from protocols import cbor, cose
from protocols.cardsub import ISO_NAMESPACE
from protocols.mdoc import (
    AlternativeDataElements,
    DeviceRequest,
    DeviceResponse,
    DocRequest,
    DocRequestInfo,
    ItemsRequest,
    SessionData,
    SessionEstablishment,
)
from reader.hostile import flip_signature
from reader.session import RequestSpec
from wallet_sim.consent import ConsentRequest, RulesConsent
from wallet_sim.wallet import Wallet


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A phone with one credential (slot 0), so every presentation shows the same MSO."""
    home = tmp_path_factory.mktemp("home")
    pki = make_pki()
    from test_present_kit import make_phone

    return {"home": home, "pki": pki, "phone": make_phone(home, pki, slots=(0,))}


def transmit(world):
    return wallet_sim.open_secure_element(world["phone"], world["home"]).transmit


def make_wallet(world, consent=None, **kw) -> Wallet:
    return Wallet(transmit(world), consent or RulesConsent.allow_all(), clock=Clock(), **kw)


def items(*names: str, retain: bool = False) -> ItemsRequest:
    return ItemsRequest.build(DOCTYPE, {NS: dict.fromkeys(names, retain)})


def ask(wallet: Wallet, build):
    """One request in a fresh session: ``build(transcript)`` gives the DeviceRequest (so a
    reader can sign over the session's transcript); the session and its DeviceResponse."""
    s = wallet.start()
    peer = Peer(s)
    request = build(peer.transcript)
    return s, peer.response(s.receive(peer.establishment(request.encode())))


def responses(session):
    return [e for e in session.events if e.kind == "response"]


def status_of(answer: bytes) -> int | None:
    return SessionData.decode(answer).status


# -- SessionData status codes and the end of a session (§9.1.1.4) -----------------------------


def test_a_message_that_is_not_bytes_is_status_11_cbor_decoding_error(world):
    for opened in (False, True):
        s = make_wallet(world).start()
        if opened:
            peer = Peer(s)
            s.receive(peer.establishment(DeviceRequest((DocRequest(items("family_name")),)).encode()))
        answer = s.receive("not bytes")  # type: ignore[arg-type]
        assert status_of(answer) == 11 and s.state == "terminated"


def test_an_ereaderkey_the_session_cannot_agree_with_is_status_10_session_encryption_error(world):
    """The SessionEstablishment decodes, but its EReaderKey is on another curve than the
    EDeviceKey: no session key can be derived. That is a session encryption error (10), not a
    CBOR decoding error (11)."""
    s = make_wallet(world).start()
    p384 = cose.CoseKey.from_public_key(ec.generate_private_key(ec.SECP384R1()).public_key())
    answer = s.receive(SessionEstablishment.build(p384, bytes(40)).encode())
    assert status_of(answer) == 10 and s.state == "terminated"
    assert any(e.kind == "error" and e.status == 10 and "SessionEstablishment" in e.detail for e in s.events)


def test_session_data_that_does_not_decode_in_an_open_session_is_status_11(world):
    for garbage in (b"\xa1\x61x\x01", b"\xff", cbor.dumps({"data": "text, not bytes"})):
        s = make_wallet(world).start()
        peer = Peer(s)
        s.receive(peer.establishment(DeviceRequest((DocRequest(items("family_name")),)).encode()))
        assert s.state == "open"
        assert status_of(s.receive(garbage)) == 11 and s.state == "terminated"


def test_a_request_sent_with_status_20_is_answered_and_then_the_session_ends(world):
    """A reader may send its last request with status 20 (session termination): the mdoc
    answers it, then ends the session (§9.1.1.4); a further message gets nothing."""
    s = make_wallet(world).start()
    peer = Peer(s)
    request = DeviceRequest((DocRequest(items("family_name")),)).encode()
    assert peer.response(s.receive(peer.establishment(request))).documents
    last = SessionData(data=peer.crypto.encrypt(request), status=20).encode()
    answer = s.receive(last)
    assert answer is not None and peer.response(answer).documents
    assert s.state == "terminated"
    assert s.receive(SessionData(data=peer.crypto.encrypt(request)).encode()) is None


def test_session_keys_are_destroyed_when_the_session_ends(world):
    """§9.1.1.4: on termination the mdoc destroys the session keys; whether the holder ends
    it, the reader does (status 20) or an error does."""
    wallet = make_wallet(world)
    request = DeviceRequest((DocRequest(items("family_name")),)).encode()

    def opened():
        s = wallet.start()
        peer = Peer(s)
        s.receive(peer.establishment(request))
        assert s._crypto is not None
        return s, peer

    s, _ = opened()
    s.terminate()
    assert s._crypto is None
    s, _ = opened()
    s.receive(SessionData(status=20).encode())
    assert s._crypto is None
    s, peer = opened()
    s.receive(SessionData(data=bytes(32)).encode())  # does not decrypt: status 10
    assert s.state == "terminated" and s._crypto is None


def test_an_internal_error_is_status_10_and_ends_the_session(world, monkeypatch):
    """Whatever goes wrong inside the wallet, the reader gets a SessionData status (10,
    session encryption error: there is no more precise one) and the session ends."""
    s = make_wallet(world).start()
    peer = Peer(s)

    def boom(_plaintext):
        raise RuntimeError("a bug")

    monkeypatch.setattr(s, "_respond", boom)
    answer = s.receive(peer.establishment(DeviceRequest((DocRequest(items("family_name")),)).encode()))
    assert status_of(answer) == 10 and s.state == "terminated"
    assert any("internal error: RuntimeError" in e.detail for e in s.events)


def test_a_secure_element_refusal_is_device_response_status_10_general_error(world):
    """The SE refuses to sign (6985): no document, DeviceResponse status 10 (general error,
    §8.3.2.1.2.3), and the session stays usable for the reader to end."""
    real = transmit(world)

    def refusing(apdu: bytes) -> bytes:
        return b"\x69\x85" if apdu[1] == 0x2A else real(apdu)

    s, response = ask(Wallet(refusing, RulesConsent.allow_all(), clock=Clock()),
                      lambda _t: DeviceRequest((DocRequest(items("family_name")),)))
    assert response.status == 10 and response.documents == ()
    assert any(e.kind == "error" and e.status == 10 and "secure element" in e.detail for e in s.events)


# -- what is released (§8.3.2.1.2.2) -------------------------------------------------------------


def test_a_request_for_elements_the_document_does_not_hold_gets_document_errors_not_an_empty_document(world):
    s, response = ask(make_wallet(world),
                      lambda _t: DeviceRequest((DocRequest(items("no_such_element", "nor_this")),)))
    assert response.documents == () and response.document_errors == ({DOCTYPE: 0},)
    (event,) = responses(s)
    assert event.released == {} and event.not_held == {NS: frozenset({"no_such_element", "nor_this"})}


@dataclasses.dataclass
class Generous:
    """A consent policy that answers more than it was asked (a buggy prompt, a wildcard
    rule gone wrong): the wallet must still send only what the reader asked for."""

    def decide(self, request: ConsentRequest):
        return {NS: {"family_name", "given_name", "birth_date"}, ISO_NAMESPACE: {"family_name", "birth_date"}}


def test_a_consent_policy_cannot_release_what_the_reader_did_not_ask_for(world):
    s, response = ask(make_wallet(world, Generous()),
                      lambda _t: DeviceRequest((DocRequest(items("family_name")),)))
    (doc,) = response.documents
    assert {ns: {i.element_identifier for i in v} for ns, v in doc.issuer_signed.items().items()} == {
        NS: {"family_name"}}
    assert responses(s)[0].released == {NS: frozenset({"family_name"})}


def test_a_consent_prompt_that_fails_releases_nothing(world):
    class Broken:
        def decide(self, request):
            raise OSError("the screen went away")

    s, response = ask(make_wallet(world, Broken()), lambda _t: DeviceRequest((DocRequest(items("family_name")),)))
    assert response.documents == () and response.document_errors == ({DOCTYPE: 0},)
    assert any(e.kind == "error" and "consent: OSError" in e.detail for e in s.events)


def test_a_document_of_exactly_the_maximum_response_size_is_sent(world):
    """maximumResponseSize (second edition) is the largest size the reader takes: a
    document of that many bytes is sent, one byte more is not."""
    def request(limit=None):
        info = DocRequestInfo(maximum_response_size=limit) if limit is not None else None
        return lambda _t: DeviceRequest.build([DocRequest(ItemsRequest.build(DOCTYPE, {NS: {"family_name": False}},
                                                                             info=info))])

    _, free = ask(make_wallet(world), request(10**6))
    size = len(cbor.dumps(free.documents[0].to_cbor()))
    _, exact = ask(make_wallet(world), request(size))
    assert len(exact.documents) == 1 and len(cbor.dumps(exact.documents[0].to_cbor())) == size
    _, under = ask(make_wallet(world), request(size - 1))
    assert under.documents == () and under.document_errors == ({DOCTYPE: 0},)


@pytest.mark.parametrize("at", ["inside", "valid_from", "valid_until"])
def test_a_valid_mso_is_presented_before_an_expired_one(tmp_path, at):
    """Of a batch, the wallet presents an MSO within its validity (validFrom <= now <=
    validUntil, both ends included, §9.1.2.4) even when an expired one was presented less
    often."""
    pki = make_pki(now=T0 - dt.timedelta(days=40))  # its DS certificate valid since T0 - 70 days
    pid = wallet_sim.create_phone(tmp_path)
    se = wallet_sim.open_secure_element(pid, tmp_path)
    old = T0 - dt.timedelta(days=60)  # 30-day MSOs: this one ran out a month ago
    personalise_mdoc_directly(se.transmit, [0, 1], lambda slot: bytes(32),
                              lambda slot, spki, proof: issue(pki, spki, idx=slot, now=old if slot == 0 else T0))
    clock = Clock()
    wallet = Wallet(wallet_sim.open_secure_element(pid, tmp_path).transmit, RulesConsent.allow_all(), clock=clock)
    fresh = next(c for c in wallet.credentials() if c.slot == 1).mso.validity_info
    if at != "inside":
        clock.now = getattr(fresh, at)
    for _ in range(2):
        s, response = ask(wallet, lambda _t: DeviceRequest((DocRequest(items("family_name")),)))
        assert responses(s)[0].slot == 1
        assert response.documents[0].issuer_signed.mso().validity_info.valid_until >= clock.now


# -- readerAuthAll (second edition; specs/presentation.md section 14) ------------------------------


def test_reader_auth_all_is_judged_against_the_wallets_revocation_lists(world):
    """A reader CA's revocation of a reader certificate holds for readerAuthAll as for
    readerAuth: the reader is shown as not trusted, and a holder releasing to trusted
    readers only releases nothing."""
    pki = reader_pki()

    def revoked(path, anchor, now):
        return f"{path[0].subject.rfc4514_string()} revoked (keyCompromise)"

    cautious = RulesConsent.from_mapping({"documents": {"*": {"*": "*"}}, "trusted_readers_only": True})
    wallet = make_wallet(world, cautious, reader_trust_anchors=[pki.ca], reader_revocation=revoked)
    s, response = ask(wallet, lambda t: DeviceRequest.build([DocRequest(items("family_name"))],
                                                            reader_signer=pki.signer, reader_chain=pki.chain,
                                                            session_transcript=t))
    (event,) = responses(s)
    assert event.reader.signature_valid and not event.reader.trusted and event.reader.revocation_failed
    assert "revoked (keyCompromise)" in event.reader.reason
    assert response.documents == ()


def test_reader_auth_all_with_one_signature_that_does_not_verify_is_not_verified(world):
    """With several readerAuthAll signatures the reader counts as verified only if every
    signature is (specs/presentation.md 14)."""
    pki = reader_pki()
    wallet = make_wallet(world, reader_trust_anchors=[pki.ca])

    def build(t):
        request = DeviceRequest.build([DocRequest(items("family_name"))], reader_signer=pki.signer,
                                      reader_chain=pki.chain, session_transcript=t)
        good = request.reader_auth_all[0]
        return dataclasses.replace(request, reader_auth_all=(good, flip_signature(good)))

    s, _ = ask(wallet, build)
    (event,) = responses(s)
    assert event.reader.subject == "CN=Shop Reader 1,C=JP" and not event.reader.signature_valid


def test_a_doc_request_with_its_own_reader_auth_is_judged_by_it_and_reader_auth_all_by_itself(world):
    """readerAuthAll names the reader of every DocRequest without a readerAuth of its own; a
    DocRequest that has one is judged by that one, and its verdict (here: a reader of a CA
    the wallet does not trust) does not leak into readerAuthAll's."""
    trusted, stranger = reader_pki(), reader_pki("Stranger Reader", ca_cn="Unknown CA")
    wallet = make_wallet(world, reader_trust_anchors=[trusted.ca])

    def build(t):
        own = DocRequest.build(items("family_name"), reader_signer=stranger.signer, reader_chain=stranger.chain,
                               session_transcript=t)
        return DeviceRequest.build([own, DocRequest(items("given_name"))], reader_signer=trusted.signer,
                                   reader_chain=trusted.chain, session_transcript=t)

    s, response = ask(wallet, build)
    assert len(response.documents) == 2
    first, second = responses(s)
    assert first.reader.subject == "CN=Stranger Reader,C=JP" and first.reader.signature_valid
    assert not first.reader.trusted
    assert second.reader.subject == "CN=Shop Reader 1,C=JP"
    assert second.reader.signature_valid and second.reader.trusted


# -- alternativeDataElements and issuerIdentifiers (second edition; specs/presentation.md 14) ------


def _with_alternatives(asked: dict[str, bool], requested: str, *sets: tuple[str, ...]) -> ItemsRequest:
    info = DocRequestInfo(alternative_data_elements=(AlternativeDataElements(
        (NS, requested), tuple(tuple((NS, e) for e in s) for s in sets)),))
    return ItemsRequest.build(DOCTYPE, {NS: asked}, info=info)


def _released(world, request: ItemsRequest, consent=None) -> set[str]:
    s, response = ask(make_wallet(world, consent), lambda _t: DeviceRequest.build([DocRequest(request)]))
    return {i.element_identifier for doc in response.documents for i in doc.issuer_signed.items().get(NS, ())}


def test_an_element_the_document_holds_is_never_replaced_by_an_alternative(world):
    assert _released(world, _with_alternatives({"family_name": False}, "family_name", ("birth_date",))) == {
        "family_name"}


def test_an_alternative_set_stands_in_only_when_the_document_holds_all_of_it(world):
    request = _with_alternatives({"age_over_21": False}, "age_over_21", ("birth_date", "no_such_element"),
                                 ("age_over_20",))
    assert _released(world, request) == {"age_over_20"}


def test_only_the_first_alternative_set_held_stands_in(world):
    request = _with_alternatives({"age_over_21": False}, "age_over_21", ("birth_date",), ("age_over_20",))
    assert _released(world, request) == {"birth_date"}


def test_an_alternative_already_asked_for_keeps_its_own_intent_to_retain(world):
    """family_name is asked without intent to retain, and is also in the alternative set of
    age_over_21, asked with it: it stays as asked, so a holder refusing what is retained
    still releases it (and the stand-in birth_date, retained, is refused)."""
    request = _with_alternatives({"family_name": False, "age_over_21": True}, "age_over_21",
                                 ("family_name", "birth_date"))
    careful = RulesConsent.from_mapping({"documents": {"*": {"*": "*"}}, "refuse_intent_to_retain": True})
    assert _released(world, request, careful) == {"family_name"}
    assert _released(world, request) == {"family_name", "birth_date"}


def _ski(cert) -> bytes:
    from cryptography import x509

    return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest


def test_issuer_identifiers_name_an_issuing_authority_not_the_document_signer_itself(world):
    """issuerIdentifiers are the key identifiers of issuing authorities (an IACA's, an
    intermediate's): the document signer's own subjectKeyIdentifier names none."""
    def request(ids):
        info = DocRequestInfo(issuer_identifiers=ids)
        return lambda _t: DeviceRequest.build([DocRequest(ItemsRequest.build(DOCTYPE, {NS: {"family_name": False}},
                                                                             info=info))])

    _, response = ask(make_wallet(world), request((_ski(world["pki"].ds),)))
    assert response.documents == () and response.document_errors == ({DOCTYPE: 0},)
    _, response = ask(make_wallet(world), request((_ski(world["pki"].iaca),)))
    assert len(response.documents) == 1


# -- online (ISO/IEC TS 18013-7 Annex C) ----------------------------------------------------------


def test_an_internal_error_online_is_a_sealed_device_response_with_status_10(world, monkeypatch):
    """Annex C: whatever goes wrong inside the wallet, the page still gets an
    EncryptedResponse, its DeviceResponse status 10 (general error, §8.3.2.1.2.3)."""
    from test_present_kit import kit_pipeline

    from reader.online import OnlineReaderSession, credential_message

    reader = OnlineReaderSession([RequestSpec(DOCTYPE, {NS: {"family_name": False}})], kit_pipeline(world["pki"]),
                                 "https://shop.example")
    session = make_wallet(world).online("https://shop.example")

    def boom(_plaintext):
        raise RuntimeError("a bug")

    monkeypatch.setattr(session, "_respond", boom)
    outcome = reader.receive(credential_message(session.respond(reader.start())))
    assert DeviceResponse.decode(outcome.device_response).status == 10
    assert session.state == "terminated" and any("internal error: RuntimeError" in e.detail for e in session.events)
